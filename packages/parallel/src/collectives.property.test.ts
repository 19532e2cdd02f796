import { fork } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Communicator, Executor } from './index';
import { createSharedMemoryCommunicator, createSharedMemoryState, createWorkerExecutor } from './index';
import { expectedResults, runCollectiveCase } from './test-data';
import type { CollectiveCase, CollectiveResults } from './test-data';
import { zeroMqWorld } from './test-loopback';
import type { TestWorkerData, TestWorkerInput } from './test-worker-runner';

const maxLength = 1500;
const sizes = [2, 3, 4] as const;

/** A world size and a collective case for it: random length (empty included), element type, seed and root. */
const worldAndCase = fc
  .record({
    size: fc.constantFrom(...sizes),
    length: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 1, max: maxLength })),
    elementType: fc.constantFrom('float32' as const, 'int32' as const),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    rootFraction: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  })
  .map(({ size, length, elementType, seed, rootFraction }) => ({
    size,
    testCase: { seed, length, elementType, root: Math.floor(rootFraction * size) } satisfies CollectiveCase,
  }));

function expectResults(actual: CollectiveResults, testCase: CollectiveCase, size: number, rank: number): void {
  const expected = expectedResults(testCase, size, rank);
  for (const name of ['reduced', 'gathered', 'broadcast', 'received'] as const) {
    expect(actual[name].constructor, `${name} type on rank ${rank}`).toBe(expected[name].constructor);
    // Bitwise equality: every rank sums in rank order, so there is no tolerance to grant.
    expect(Array.from(actual[name]), `${name} on rank ${rank} of ${size}`).toEqual(Array.from(expected[name]));
  }
}

async function runOnAllRanks(communicators: readonly Communicator[], testCase: CollectiveCase): Promise<void> {
  const results = await Promise.all(communicators.map((communicator) => runCollectiveCase(communicator, testCase)));
  results.forEach((result, rank) => expectResults(result, testCase, communicators.length, rank));
}

describe('collectives over shared memory, every rank in this thread', () => {
  const worlds = new Map<number, Communicator[]>();
  beforeAll(() => {
    for (const size of sizes) {
      const state = createSharedMemoryState({ worldSize: size, maxMessageBytes: maxLength * 4 });
      // No spinning: the ranks share this thread, so a spinning rank only delays the peer it waits for.
      worlds.set(size, Array.from({ length: size }, (_, rank) => createSharedMemoryCommunicator(state, rank, { spinIterations: 0 })));
    }
  });

  it('allReduce, allGather, broadcast and send/recv equal the rank-order reference', async () => {
    await fc.assert(
      fc.asyncProperty(worldAndCase, async ({ size, testCase }) => runOnAllRanks(worlds.get(size)!, testCase)),
      { numRuns: 60 },
    );
  });
});

describe('collectives over ZeroMQ on loopback, every rank in this process', () => {
  const worlds = new Map<number, Communicator[]>();
  beforeAll(async () => {
    for (const size of sizes) {
      worlds.set(size, await zeroMqWorld(size));
    }
  });
  afterAll(async () => {
    for (const communicators of worlds.values()) await Promise.all(communicators.map((communicator) => communicator.close()));
  });

  it('allReduce, allGather, broadcast and send/recv equal the rank-order reference', async () => {
    await fc.assert(
      fc.asyncProperty(worldAndCase, async ({ size, testCase }) => runOnAllRanks(worlds.get(size)!, testCase)),
      { numRuns: 40 },
    );
  });
});

describe('collectives over shared memory across worker threads', () => {
  const slotBytes = (3 + Math.max(...sizes)) * maxLength * 4;
  const worlds = new Map<number, { executor: Executor<TestWorkerInput, unknown>; results: SharedArrayBuffer }>();
  beforeAll(async () => {
    const workerUrl = pathToFileURL(join(inject('testEntriesDirectory'), 'test-worker-runner.mjs'));
    for (const size of sizes) {
      const results = new SharedArrayBuffer(slotBytes * size);
      const executor = await createWorkerExecutor<TestWorkerInput, unknown, TestWorkerData>({
        workerUrl,
        worldSize: size,
        maxMessageBytes: maxLength * 4,
        workerData: { results, slotBytes },
        communicator: { timeoutMs: 10_000 },
      });
      worlds.set(size, { executor, results });
    }
  });
  afterAll(async () => {
    for (const { executor } of worlds.values()) await executor.close();
  });

  it('allReduce, allGather, broadcast and send/recv equal the rank-order reference on every rank', async () => {
    await fc.assert(
      fc.asyncProperty(worldAndCase, async ({ size, testCase }) => {
        const { executor, results } = worlds.get(size)!;
        await executor.execute({ type: 'collectives', testCase });
        for (let rank = 0; rank < size; rank += 1) {
          expectResults(readResults(results, rank * slotBytes, testCase, size), testCase, size, rank);
        }
      }),
      { numRuns: 40 },
    );
  });
});

describe('collectives over ZeroMQ between processes', () => {
  it('two and three processes on loopback agree with the rank-order reference', async () => {
    const entry = join(inject('testEntriesDirectory'), 'test-zeromq-rank.mjs');
    for (const size of [2, 3]) {
      const testCases: CollectiveCase[] = [
        { seed: 11 * size, length: 576, elementType: 'float32', root: 0 },
        { seed: 12 * size, length: 3, elementType: 'int32', root: size - 1 },
        { seed: 13 * size, length: 49_152 / 8, elementType: 'float32', root: 1 },
      ];
      const outputs = await runProcesses(entry, size, testCases);
      for (const { rank, results } of outputs) {
        testCases.forEach((testCase, index) => {
          const expected = expectedResults(testCase, size, rank);
          for (const name of ['reduced', 'gathered', 'broadcast', 'received'] as const) {
            expect(results[index]![name], `${name} of case ${index} on rank ${rank}`).toEqual(Array.from(expected[name]));
          }
        });
      }
    }
  });
});

function readResults(results: SharedArrayBuffer, offset: number, testCase: CollectiveCase, size: number): CollectiveResults {
  const { length, elementType } = testCase;
  const make = (start: number, count: number): Float32Array | Int32Array => {
    const bytes = new Uint8Array(results, offset + start * 4, count * 4).slice();
    return elementType === 'int32' ? new Int32Array(bytes.buffer) : new Float32Array(bytes.buffer);
  };
  return {
    reduced: make(0, length),
    gathered: make(length, size * length),
    broadcast: make((1 + size) * length, length),
    received: make((2 + size) * length, length),
  };
}

interface ProcessOutput {
  rank: number;
  results: Record<'reduced' | 'gathered' | 'broadcast' | 'received', number[]>[];
}

/**
 * Starts `size` rank processes; each binds a port ZeroMQ picks and reports it, and once all have, every process gets
 * the full endpoint list (the parent is the rendezvous) and runs the cases.
 */
async function runProcesses(entry: string, size: number, testCases: CollectiveCase[]): Promise<ProcessOutput[]> {
  const endpoints = new Array<string>(size);
  let bound = 0;
  const children = Array.from({ length: size }, (_, rank) =>
    fork(entry, [JSON.stringify({ rank, testCases })], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'], timeout: 20_000 }),
  );
  return Promise.all(
    children.map(
      (child) =>
        new Promise<ProcessOutput>((resolve, reject) => {
          let output: ProcessOutput | undefined;
          let stderr = '';
          child.stderr!.on('data', (chunk: Buffer) => {
            stderr += chunk.toString();
          });
          child.on('message', (message: { rank: number; endpoint: string } | ProcessOutput) => {
            if ('endpoint' in message) {
              endpoints[message.rank] = message.endpoint;
              bound += 1;
              if (bound === size) for (const each of children) each.send({ endpoints });
            } else {
              output = message;
            }
          });
          child.on('error', reject);
          // 'close', not 'exit': Node can emit 'exit' before the child's last IPC message is delivered; 'close' waits for
          // the channel to disconnect as well as for stdio.
          child.on('close', (code, signal) => {
            if (code === 0 && output !== undefined) resolve(output);
            else reject(new Error(`rank process exited with code ${code} (signal ${signal}), no result:\n${stderr}`));
          });
        }),
    ),
  );
}

import { afterEach, describe, expect, it } from 'vitest';
import {
  abortSharedMemory,
  CommunicatorError,
  createSharedMemoryCommunicator,
  createSharedMemoryState,
  createZeroMqCommunicator,
  parallelGroups,
} from './index';
import type { Communicator } from './index';
import { freeLoopbackEndpoints, zeroMqWorld } from './test-loopback';

type World = (size: number, options?: { timeoutMs?: number }) => Promise<Communicator[]>;

const opened: Communicator[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((communicator) => communicator.close()));
});

const transports: [string, World][] = [
  [
    'shared memory',
    async (size, options = {}) => {
      const state = createSharedMemoryState({ worldSize: size, maxMessageBytes: 256 });
      return Array.from({ length: size }, (_, rank) => createSharedMemoryCommunicator(state, rank, { spinIterations: 0, ...options }));
    },
  ],
  [
    'ZeroMQ',
    async (size, options = {}) => {
      const communicators = await zeroMqWorld(size, { timeoutMs: options.timeoutMs ?? 10_000, lingerMs: 0 });
      opened.push(...communicators);
      return communicators;
    },
  ],
];

async function communicatorError(promise: Promise<unknown>): Promise<CommunicatorError> {
  try {
    await promise;
  } catch (error) {
    expect(CommunicatorError.isInstance(error)).toBe(true);
    return error as CommunicatorError;
  }
  throw new Error('expected a CommunicatorError');
}

describe.each(transports)('%s communicator', (_, world) => {
  it('runs tensor-parallel all-reduces within each stage and passes hidden states between stages (tp 2 × pp 2)', async () => {
    const ranks = await world(4);
    const { tensorParallel, pipelineParallel } = parallelGroups({ tensorParallelSize: 2, pipelineParallelSize: 2 });
    const results = await Promise.all(
      ranks.map(async (communicator) => {
        const rank = communicator.rank;
        const stage = Math.floor(rank / 2);
        const stageGroup = communicator.subgroup(tensorParallel[stage]!);
        const pipeline = communicator.subgroup(pipelineParallel[rank % 2]!);
        const hidden = new Float32Array([rank + 1, 10 * (rank + 1)]);
        if (stage === 1) await pipeline.recv(hidden, 0);
        await stageGroup.allReduce(hidden);
        if (stage === 0) await pipeline.send(hidden, 1);
        return { stageRank: stageGroup.rank, stageSize: stageGroup.size, hidden: Array.from(hidden) };
      }),
    );
    // Stage 0 sums ranks 0 and 1: [3, 30]; each stage-1 rank receives that and sums it with its peer's copy.
    expect(results).toEqual([
      { stageRank: 0, stageSize: 2, hidden: [3, 30] },
      { stageRank: 1, stageSize: 2, hidden: [3, 30] },
      { stageRank: 0, stageSize: 2, hidden: [6, 60] },
      { stageRank: 1, stageSize: 2, hidden: [6, 60] },
    ]);
  });

  it('reports ranks whose operations diverged instead of returning wrong data', async () => {
    const [first, second] = await world(2);
    const [mismatch] = await Promise.allSettled([
      first!.allReduce(new Float32Array(4)),
      second!.allGather(new Float32Array(4), new Float32Array(8)),
    ]);
    const error = await communicatorError(Promise.reject((mismatch as PromiseRejectedResult).reason));
    expect(error.code).toBe('collective_mismatch');
    expect(error.message).toBe('rank 0: expected allReduce from rank 1, which sent allGather: the ranks\' orders diverged');
  });

  it('reports a length mismatch between ranks', async () => {
    const [first, second] = await world(2);
    const [result] = await Promise.allSettled([first!.allReduce(new Float32Array(4)), second!.allReduce(new Float32Array(5))]);
    expect((result as PromiseRejectedResult).reason).toMatchObject({
      code: 'collective_mismatch',
      message: 'rank 0: allReduce with rank 1: expected 4 float32 elements, it sent 5 float32',
    });
  });

  it('checks arguments before touching the transport', async () => {
    const [first] = await world(2);
    expect((await communicatorError(first!.send(new Float32Array(1), 0))).message).toBe(
      'rank 0: send destination must be another rank, got this one',
    );
    expect((await communicatorError(first!.recv(new Float32Array(1), 2))).code).toBe('invalid_collective_argument');
    expect((await communicatorError(first!.allGather(new Float32Array(2), new Float32Array(3)))).message).toBe(
      'rank 0: allGather output must hold 2 × 2 elements, it holds 3',
    );
    expect((await communicatorError(first!.allReduce(new Float64Array(2) as never))).code).toBe('invalid_collective_argument');
    expect(() => first!.subgroup([1])).toThrow('a subgroup must include this rank; [1] does not');
  });

  it('refuses a second operation while one is running on the same rank', async () => {
    const [first] = await world(2, { timeoutMs: 200 });
    const pending = first!.allReduce(new Float32Array(2));
    expect((await communicatorError(first!.allReduce(new Float32Array(2)))).message).toContain('another operation');
    expect((await communicatorError(pending)).code).toBe('communicator_timeout');
  });

  it('times out a wait on a peer that never comes', async () => {
    const [first] = await world(2, { timeoutMs: 100 });
    const error = await communicatorError(first!.recv(new Int32Array(3), 1));
    expect(error).toMatchObject({ code: 'communicator_timeout', rank: 0 });
  });

  it('refuses operations after close', async () => {
    const [first] = await world(2);
    await first!.close();
    expect((await communicatorError(first!.allReduce(new Float32Array(1)))).code).toBe('communicator_closed');
  });
});

describe('ZeroMQ communicator', () => {
  it('connects ranks given a fixed endpoint list, whichever binds first', async () => {
    const endpoints = await freeLoopbackEndpoints(2);
    const second = await createZeroMqCommunicator({ rank: 1, endpoints, timeoutMs: 10_000 });
    const pending = second.allReduce(Float32Array.of(1, 2));
    const first = await createZeroMqCommunicator({ rank: 0, endpoints, timeoutMs: 10_000 });
    opened.push(first, second);
    const data = Float32Array.of(10, 20);
    await Promise.all([first.allReduce(data), pending]);
    expect(Array.from(data)).toEqual([11, 22]);
  });
});

describe('shared memory communicator', () => {
  it('wakes a waiting rank with communicator_aborted when the state is aborted', async () => {
    const state = createSharedMemoryState({ worldSize: 2, maxMessageBytes: 64 });
    const waiting = createSharedMemoryCommunicator(state, 0).allReduce(new Float32Array(4));
    setTimeout(() => abortSharedMemory(state), 10);
    expect((await communicatorError(waiting)).message).toBe('rank 0: aborted while waiting on rank 1');
  });

  it('refuses a message larger than the shared slot, naming the limit', async () => {
    const state = createSharedMemoryState({ worldSize: 2, maxMessageBytes: 60 });
    expect(state.slotBytes).toBe(64);
    const error = await communicatorError(createSharedMemoryCommunicator(state, 0).send(new Float32Array(17), 1));
    expect(error.message).toBe(
      'rank 0: a message of 68 bytes exceeds the shared slot of 64 bytes (createSharedMemoryState maxMessageBytes)',
    );
  });

  it('sums int32 with 32-bit wrap-around, identically on every rank', async () => {
    const state = createSharedMemoryState({ worldSize: 3, maxMessageBytes: 64 });
    const ranks = [0, 1, 2].map((rank) => createSharedMemoryCommunicator(state, rank));
    const data = ranks.map(() => new Int32Array([2 ** 31 - 1, -5]));
    await Promise.all(ranks.map((communicator, rank) => communicator.allReduce(data[rank]!)));
    for (const result of data) expect(Array.from(result)).toEqual([2 ** 31 - 3, -15]);
  });
});

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { createSingleRankExecutor, createWorkerExecutor, ExecutorError, ParallelError, serveExecutorWorker } from './index';
import type { Executor } from './index';
import type { TestWorkerData, TestWorkerInput } from './test-worker-runner';

function workerUrl(): URL {
  return pathToFileURL(join(inject('testEntriesDirectory'), 'test-worker-runner.mjs'));
}

function startWorkers(worldSize: number, options: { outputRank?: number; workerData?: TestWorkerData } = {}) {
  return createWorkerExecutor<TestWorkerInput, unknown, TestWorkerData>({
    workerUrl: workerUrl(),
    worldSize,
    maxMessageBytes: 1024,
    workerData: options.workerData ?? {},
    ...(options.outputRank === undefined ? {} : { outputRank: options.outputRank }),
  });
}

async function rejection(promise: Promise<unknown>): Promise<ExecutorError> {
  try {
    await promise;
  } catch (error) {
    expect(ExecutorError.isInstance(error)).toBe(true);
    expect(ParallelError.isInstance(error)).toBe(true);
    return error as ExecutorError;
  }
  throw new Error('expected an ExecutorError');
}

describe('createSingleRankExecutor', () => {
  it('runs the runner in this thread with a communicator of size 1 whose collectives return at once', async () => {
    const executor = await createSingleRankExecutor<number[], { sum: number[]; gathered: number[] }, string>(
      ({ rank, worldSize, communicator, workerData }) => {
        expect({ rank, worldSize, workerData, size: communicator.size }).toEqual({
          rank: 0,
          worldSize: 1,
          workerData: 'model',
          size: 1,
        });
        return {
          async execute(input) {
            const data = Float32Array.from(input);
            await communicator.allReduce(data);
            const gathered = new Float32Array(input.length);
            await communicator.allGather(data, gathered);
            return { sum: Array.from(data), gathered: Array.from(gathered) };
          },
        };
      },
      { workerData: 'model' },
    );
    expect(executor.worldSize).toBe(1);
    expect(await executor.execute([1, 2.5])).toEqual({ sum: [1, 2.5], gathered: [1, 2.5] });
    await executor.close();
    expect((await rejection(executor.execute([1]))).code).toBe('executor_closed');
  });

  it('makes a runner error fatal, typed with the rank and the cause', async () => {
    let closed = false;
    const executor = await createSingleRankExecutor<string, string>(() => ({
      execute(input) {
        if (input === 'bad') throw new TypeError('bad batch');
        return input;
      },
      close() {
        closed = true;
      },
    }));
    const error = await rejection(executor.execute('bad'));
    expect(error).toMatchObject({ code: 'rank_failed', rank: 0, message: 'rank 0 failed while executing: bad batch' });
    expect(error.cause).toBeInstanceOf(TypeError);
    expect((await rejection(executor.execute('good'))).code).toBe('rank_failed');
    await executor.close();
    expect(closed).toBe(true);
  });
});

describe('createWorkerExecutor', () => {
  it('gives each worker its rank and data, forwards inputs and returns the output rank\'s result', async () => {
    const executor = await startWorkers(3, { outputRank: 2 });
    try {
      expect(executor.worldSize).toBe(3);
      expect(await executor.execute({ type: 'echo', value: { tokens: [1, 2, 3] } })).toEqual({
        rank: 2,
        worldSize: 3,
        value: { tokens: [1, 2, 3] },
      });
      // Overlapping calls (a pipeline's batches in flight) each get their own result, in order.
      const outputs = await Promise.all([1, 2, 3, 4].map((value) => executor.execute({ type: 'echo', value })));
      expect(outputs.map((output) => (output as { value: number }).value)).toEqual([1, 2, 3, 4]);
    } finally {
      await executor.close();
    }
    expect((await rejection(executor.execute({ type: 'echo', value: 1 }))).code).toBe('executor_closed');
  });

  for (const [then, code, detail] of [
    ['exit', 'worker_crashed', 'exited (code 7)'],
    ['uncaught', 'worker_crashed', 'crashed: uncaught in a worker'],
    ['throw', 'rank_failed', 'failed while executing: runner failed mid-step'],
  ] as const) {
    it(`rejects with ${code} when a rank leaves (${then}) while its peers wait on it in an all-reduce`, async () => {
      const executor = await startWorkers(3);
      const error = await rejection(executor.execute({ type: 'all-reduce-then', then, failingRank: 1 }));
      expect(error.code).toBe(code);
      expect(error.rank).toBe(1);
      expect(error.message).toContain(detail);
      if (then === 'exit') expect(error.exitCode).toBe(7);
      // The executor is dead: later calls fail the same way at once, and closing still returns.
      expect(await rejection(executor.execute({ type: 'echo', value: 1 }))).toBe(error);
      await executor.close();
    });
  }

  it('rejects startup with rank_failed when a rank cannot build its runner, and stops the other workers', async () => {
    const error = await rejection(startWorkers(2, { workerData: { failStartupRank: 1 } }));
    expect(error).toMatchObject({ code: 'rank_failed', rank: 1 });
    expect(error.message).toBe('rank 1 failed while starting: rank 1 could not load its shard');
  });

  it('rejects a worker entry that does not exist as a crash, not a hang', async () => {
    const error = await rejection(
      createWorkerExecutor({ workerUrl: new URL('./no-such-worker.mjs', workerUrl()), worldSize: 2, maxMessageBytes: 64 }),
    );
    expect(error.code).toBe('worker_crashed');
  });

  it('keeps the executor usable when an input cannot be cloned', async () => {
    const executor: Executor<unknown, unknown> = await startWorkers(2);
    try {
      await expect(executor.execute({ type: 'echo', value: () => 1 })).rejects.toMatchObject({ code: 'invalid_executor_input' });
      expect(await executor.execute({ type: 'echo', value: 'still alive' })).toMatchObject({ value: 'still alive' });
    } finally {
      await executor.close();
    }
  });

  it('serveExecutorWorker refuses to run outside an executor worker', () => {
    expect(() => serveExecutorWorker(() => ({ execute: () => 1 }))).toThrow(
      'serveExecutorWorker runs in a worker thread started by createWorkerExecutor',
    );
  });
});

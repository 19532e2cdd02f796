import { isMainThread, parentPort, Worker, workerData as rawWorkerData } from 'node:worker_threads';
import { ExecutorError, ParallelError } from './errors';
import { executorClosed, rankFailed } from './executor';
import type { Executor, RankRunner, RankRunnerFactory } from './executor';
import {
  abortSharedMemory,
  createSharedMemoryCommunicator,
  createSharedMemoryState,
} from './shared-memory-communicator';
import type { SharedMemoryCommunicatorOptions, SharedMemoryState } from './shared-memory-communicator';

export interface WorkerExecutorOptions<WorkerData = unknown> {
  /**
   * The worker entry module, loaded by every worker thread; it calls {@link serveExecutorWorker} with the rank
   * runner factory. It must be JavaScript Node can load (e.g. the engine's built worker module).
   */
  workerUrl: URL | string;
  worldSize: number;
  /** The largest collective message of one rank in bytes (sizes the shared memory; see createSharedMemoryState). */
  maxMessageBytes: number;
  /** The rank whose output `execute` returns: 0 by default; the last stage's first rank under pipeline parallelism. */
  outputRank?: number;
  /** Plain data every rank's runner gets as `context.workerData` (a model path, the partition plan). */
  workerData?: WorkerData;
  /** Options of every rank's communicator. */
  communicator?: SharedMemoryCommunicatorOptions;
  /** Node flags of the workers (default: the process's own). */
  execArgv?: string[];
  /** How long `close` lets the workers finish before terminating them, default 10 s. */
  closeTimeoutMs?: number;
}

/** What a worker receives in `workerData`: its place and the shared state; made by the executor. */
interface WorkerBootstrap {
  pagodaParallelExecutor: {
    rank: number;
    worldSize: number;
    outputRank: number;
    state: SharedMemoryState;
    communicator: SharedMemoryCommunicatorOptions;
  };
  workerData: unknown;
}

interface SerializedError {
  name: string;
  message: string;
  stack: string | undefined;
  code: unknown;
}

type ToWorker = { type: 'execute'; id: number; input: unknown } | { type: 'close' };
type FromWorker =
  | { type: 'ready' }
  | { type: 'result'; id: number; output?: unknown }
  | { type: 'failed'; during: 'starting' | 'executing'; error: SerializedError }
  | { type: 'closed' };

interface PendingCall {
  remaining: number;
  output: unknown;
  resolve: (output: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Starts `worldSize` worker threads on `workerUrl`, each one rank over shared memory, and resolves once every rank's
 * runner is built. A worker that exits or throws, or a runner that throws, rejects every call in flight and later
 * with an {@link ExecutorError} (`worker_crashed` or `rank_failed`), aborts the shared communicators so no rank
 * waits forever, and stops the other workers.
 *
 * Inputs travel to the workers by `postMessage` (plain data, cloned once per rank); collective payloads never do.
 */
export async function createWorkerExecutor<Input, Output, WorkerData = unknown>(
  options: WorkerExecutorOptions<WorkerData>,
): Promise<Executor<Input, Output>> {
  const { worldSize } = options;
  const outputRank = options.outputRank ?? 0;
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new ParallelError('invalid_executor_options', `worldSize must be a positive integer, got ${worldSize}`);
  }
  if (!Number.isInteger(outputRank) || outputRank < 0 || outputRank >= worldSize) {
    throw new ParallelError('invalid_executor_options', `outputRank must be in [0, ${worldSize}), got ${outputRank}`);
  }
  const state = createSharedMemoryState({ worldSize, maxMessageBytes: options.maxMessageBytes });
  const executor = new WorkerExecutor<Input, Output>(state, outputRank, options.closeTimeoutMs ?? 10_000);
  for (let rank = 0; rank < worldSize; rank += 1) {
    const bootstrap: WorkerBootstrap = {
      pagodaParallelExecutor: { rank, worldSize, outputRank, state, communicator: options.communicator ?? {} },
      workerData: options.workerData,
    };
    executor.adopt(
      new Worker(options.workerUrl, {
        workerData: bootstrap,
        ...(options.execArgv === undefined ? {} : { execArgv: options.execArgv }),
      }),
      rank,
    );
  }
  try {
    await executor.ready;
  } catch (error) {
    await executor.close();
    throw error;
  }
  return executor;
}

class WorkerExecutor<Input, Output> implements Executor<Input, Output> {
  readonly worldSize: number;
  readonly ready: Promise<void>;
  private readonly workers: Worker[] = [];
  private readonly exited: Promise<void>[] = [];
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 0;
  private readyCount = 0;
  private failure: ExecutorError | undefined;
  private closing = false;
  private resolveReady!: () => void;
  private rejectReady!: (error: unknown) => void;

  constructor(
    private readonly state: SharedMemoryState,
    private readonly outputRank: number,
    private readonly closeTimeoutMs: number,
  ) {
    this.worldSize = state.worldSize;
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
  }

  adopt(worker: Worker, rank: number): void {
    this.workers.push(worker);
    this.exited.push(
      new Promise<void>((resolve) => {
        worker.once('exit', (exitCode) => {
          if (!this.closing) {
            this.fail(
              new ExecutorError('worker_crashed', `the worker of rank ${rank} exited (code ${exitCode})`, {
                rank,
                exitCode,
              }),
            );
          }
          resolve();
        });
      }),
    );
    worker.on('error', (error) => {
      this.fail(
        new ExecutorError('worker_crashed', `the worker of rank ${rank} crashed: ${error.message}`, {
          rank,
          cause: error,
        }),
      );
    });
    worker.on('message', (message: FromWorker) => this.onMessage(rank, message));
  }

  execute(input: Input): Promise<Output> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(executorClosed());
    const id = this.nextId;
    this.nextId += 1;
    return new Promise<Output>((resolve, reject) => {
      this.pending.set(id, {
        remaining: this.worldSize,
        output: undefined,
        resolve: resolve as (output: unknown) => void,
        reject,
      });
      const message: ToWorker = { type: 'execute', id, input };
      try {
        for (const worker of this.workers) worker.postMessage(message);
      } catch (error) {
        // An input that is not plain data fails here, before any rank ran it: the executor stays usable.
        this.pending.delete(id);
        reject(new ParallelError('invalid_executor_input', `the input cannot be sent to the workers: ${String(error)}`, { cause: error }));
      }
    });
  }

  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      if (this.failure === undefined) {
        for (const worker of this.workers) worker.postMessage({ type: 'close' } satisfies ToWorker);
      }
    }
    const timer = setTimeout(() => {
      for (const worker of this.workers) void worker.terminate();
    }, this.failure === undefined ? this.closeTimeoutMs : 0);
    await Promise.all(this.exited);
    clearTimeout(timer);
  }

  private onMessage(rank: number, message: FromWorker): void {
    switch (message.type) {
      case 'ready':
        this.readyCount += 1;
        if (this.readyCount === this.worldSize) this.resolveReady();
        return;
      case 'result': {
        const call = this.pending.get(message.id);
        if (call === undefined) return;
        if (rank === this.outputRank) call.output = message.output;
        call.remaining -= 1;
        if (call.remaining === 0) {
          this.pending.delete(message.id);
          call.resolve(call.output);
        }
        return;
      }
      case 'failed':
        this.fail(rankFailed(rank, message.during, deserializeError(message.error)));
        return;
      case 'closed':
        return;
    }
  }

  /** The first failure wins: it rejects everything, aborts the communicators and stops every worker. */
  private fail(error: ExecutorError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    abortSharedMemory(this.state);
    this.rejectReady(error);
    for (const call of this.pending.values()) call.reject(error);
    this.pending.clear();
    this.closing = true;
    for (const worker of this.workers) void worker.terminate();
  }
}

/**
 * The body of a worker entry module: builds this rank's runner with `createRunner`, then runs every input the
 * executor sends, one at a time, until it is closed. Throws when the thread was not started by
 * {@link createWorkerExecutor}.
 *
 * ```ts
 * // engine-worker.js
 * import { serveExecutorWorker } from '@pagoda/parallel';
 * serveExecutorWorker(async ({ rank, communicator, workerData }) => loadRankRunner(rank, communicator, workerData));
 * ```
 */
export function serveExecutorWorker<Input, Output, WorkerData = unknown>(
  createRunner: RankRunnerFactory<Input, Output, WorkerData>,
): void {
  const bootstrap = rawWorkerData as Partial<WorkerBootstrap> | undefined;
  const port = parentPort;
  if (isMainThread || port === null || bootstrap?.pagodaParallelExecutor === undefined) {
    throw new ParallelError(
      'invalid_executor_options',
      'serveExecutorWorker runs in a worker thread started by createWorkerExecutor',
    );
  }
  const { rank, worldSize, outputRank, state, communicator: communicatorOptions } = bootstrap.pagodaParallelExecutor;
  const communicator = createSharedMemoryCommunicator(state, rank, communicatorOptions);
  const post = (message: FromWorker): void => port.postMessage(message);
  let runner: RankRunner<Input, Output> | undefined;
  let failed = false;
  // Inputs run strictly one after another, in arrival order; the chain never rejects.
  let queue: Promise<void> = (async () => {
    try {
      runner = await createRunner({ rank, worldSize, communicator, workerData: bootstrap.workerData as WorkerData });
      post({ type: 'ready' });
    } catch (error) {
      failed = true;
      post({ type: 'failed', during: 'starting', error: serializeError(error) });
    }
  })();
  port.on('message', (message: ToWorker) => {
    if (message.type === 'execute') {
      queue = queue.then(async () => {
        if (failed || runner === undefined) return;
        try {
          const output = await runner.execute(message.input as Input);
          // Only the output rank's result crosses back; the others only report that they finished.
          post(rank === outputRank ? { type: 'result', id: message.id, output } : { type: 'result', id: message.id });
        } catch (error) {
          failed = true;
          post({ type: 'failed', during: 'executing', error: serializeError(error) });
        }
      });
    } else if (message.type === 'close') {
      queue = queue.then(async () => {
        try {
          await runner?.close?.();
        } finally {
          await communicator.close();
          post({ type: 'closed' });
          // Closing the port lets the thread's event loop empty, so the worker exits with code 0.
          port.close();
        }
      });
    }
  });
}

function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    return { name: error.name, message: error.message, stack: error.stack, code: (error as { code?: unknown }).code };
  }
  return { name: 'Error', message: String(error), stack: undefined, code: undefined };
}

function deserializeError(serialized: SerializedError): Error {
  const error = new Error(serialized.message);
  error.name = serialized.name;
  if (serialized.stack !== undefined) error.stack = serialized.stack;
  if (serialized.code !== undefined) (error as Error & { code?: unknown }).code = serialized.code;
  return error;
}

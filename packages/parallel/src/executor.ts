import type { Communicator } from './communicator';
import { ExecutorError, ParallelError } from './errors';
import { createSharedMemoryCommunicator, createSharedMemoryState } from './shared-memory-communicator';

/**
 * Runs one step on every rank and returns one rank's output: what the engine calls, whatever the layout. Inputs and
 * outputs are plain data (structured-cloneable): they cross thread boundaries.
 */
export interface Executor<Input, Output> {
  readonly worldSize: number;
  /**
   * Runs `input` on every rank; resolves with the output rank's result once every rank finished. Calls may overlap
   * (a pipeline keeps several batches in flight): each rank runs its inputs one at a time, in call order. Rejects
   * with an {@link ExecutorError} when a rank fails or a worker dies; the executor is then dead.
   */
  execute(input: Input): Promise<Output>;
  /** Waits for the calls in flight, closes every rank's runner and communicator, and stops the workers. */
  close(): Promise<void>;
}

/** What a rank's runner is given: its place in the world, its communicator and the caller's plain data. */
export interface RankContext<WorkerData = unknown> {
  rank: number;
  worldSize: number;
  communicator: Communicator;
  workerData: WorkerData;
}

/** The per-rank model runner the engine supplies: one per rank, living in that rank's thread. */
export interface RankRunner<Input, Output> {
  execute(input: Input): Output | Promise<Output>;
  close?(): void | Promise<void>;
}

/** Builds a rank's runner (loads its shard of the weights, typically). */
export type RankRunnerFactory<Input, Output, WorkerData = unknown> = (
  context: RankContext<WorkerData>,
) => RankRunner<Input, Output> | Promise<RankRunner<Input, Output>>;

/**
 * The executor of one rank in this thread (tensor and pipeline parallel size 1). The runner gets a communicator of
 * size 1, on which collectives return at once, so the same runner code serves every layout.
 */
export async function createSingleRankExecutor<Input, Output, WorkerData = unknown>(
  createRunner: RankRunnerFactory<Input, Output, WorkerData>,
  options: { workerData?: WorkerData } = {},
): Promise<Executor<Input, Output>> {
  const communicator = createSharedMemoryCommunicator(createSharedMemoryState({ worldSize: 1, maxMessageBytes: 64 }), 0);
  let runner: RankRunner<Input, Output>;
  try {
    runner = await createRunner({ rank: 0, worldSize: 1, communicator, workerData: options.workerData as WorkerData });
  } catch (error) {
    throw rankFailed(0, 'starting', error);
  }
  return new SingleRankExecutor(runner, communicator);
}

class SingleRankExecutor<Input, Output> implements Executor<Input, Output> {
  readonly worldSize = 1;
  private failure: ExecutorError | undefined;
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly runner: RankRunner<Input, Output>,
    private readonly communicator: Communicator,
  ) {}

  execute(input: Input): Promise<Output> {
    if (this.closed) return Promise.reject(executorClosed());
    // Runs calls one at a time in call order, like a worker rank does.
    const result = this.queue.then(async () => {
      if (this.failure !== undefined) throw this.failure;
      try {
        return await this.runner.execute(input);
      } catch (error) {
        this.failure = rankFailed(0, 'executing', error);
        throw this.failure;
      }
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    await this.runner.close?.();
    await this.communicator.close();
  }
}

export function executorClosed(): ExecutorError {
  return new ExecutorError('executor_closed', 'the executor is closed');
}

export function rankFailed(rank: number, during: 'starting' | 'executing', cause: unknown): ExecutorError {
  const detail = ParallelError.isInstance(cause) || cause instanceof Error ? cause.message : String(cause);
  return new ExecutorError('rank_failed', `rank ${rank} failed while ${during}: ${detail}`, { rank, cause });
}

// Errors of @pagoda/parallel. `instanceof` fails when two copies of this package are installed (each has its own
// classes), and errors also cross worker boundaries, so every class brands its instances with a `Symbol.for`
// marker that `isInstance` checks instead.

function hasMarker(error: unknown, marker: symbol): boolean {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[marker] === true;
}

const parallelErrorMarker = Symbol.for('pagoda.parallel.error');

/** The base of every error @pagoda/parallel throws. `code` is stable; match on it, not on the message. */
export class ParallelError extends Error {
  private readonly [parallelErrorMarker] = true;
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ParallelError';
    this.code = code;
  }

  /** True for any error of this package, also one made by another installed copy of it. */
  static isInstance(error: unknown): error is ParallelError {
    return hasMarker(error, parallelErrorMarker);
  }
}

const partitionErrorMarker = Symbol.for('pagoda.parallel.error.PartitionError');

/**
 * A model cannot be split the way a parallel layout asks, or a layout parameter is malformed. `param` is the
 * snake_case name a user set (`tensor_parallel_size`, `pipeline_parallel_size`) or, for a malformed model shape,
 * the config field (`num_attention_heads`); `value` is what it was.
 */
export class PartitionError extends ParallelError {
  private readonly [partitionErrorMarker] = true;
  static readonly code = 'invalid_parallel_config';
  readonly param: string | undefined;
  readonly value: unknown;

  constructor(message: string, options?: { param?: string; value?: unknown; cause?: unknown }) {
    super(PartitionError.code, message, options);
    this.name = 'PartitionError';
    this.param = options?.param;
    this.value = options?.value;
  }

  static override isInstance(error: unknown): error is PartitionError {
    return hasMarker(error, partitionErrorMarker);
  }
}

/** Why a collective failed; the `code` of a {@link CommunicatorError}. */
export type CommunicatorErrorCode =
  /** The arguments do not fit the operation (lengths, ranks, buffer sizes). */
  | 'invalid_collective_argument'
  /** Two ranks issued different operations against each other: their orders diverged. */
  | 'collective_mismatch'
  /** The communicator was aborted (a peer died) while this rank waited on it. */
  | 'communicator_aborted'
  /** A wait exceeded the communicator's `timeoutMs`. */
  | 'communicator_timeout'
  /** The communicator was used after `close()`. */
  | 'communicator_closed';

const communicatorErrorMarker = Symbol.for('pagoda.parallel.error.CommunicatorError');

/** A collective or point-to-point operation failed; `rank` is the rank that threw it. */
export class CommunicatorError extends ParallelError {
  private readonly [communicatorErrorMarker] = true;
  declare readonly code: CommunicatorErrorCode;
  readonly rank: number;

  constructor(code: CommunicatorErrorCode, rank: number, message: string, options?: { cause?: unknown }) {
    super(code, `rank ${rank}: ${message}`, options);
    this.name = 'CommunicatorError';
    this.rank = rank;
  }

  static override isInstance(error: unknown): error is CommunicatorError {
    return hasMarker(error, communicatorErrorMarker);
  }
}

/** Why an executor failed; the `code` of an {@link ExecutorError}. */
export type ExecutorErrorCode =
  /** A worker thread exited or threw outside its runner; the executor is dead. */
  | 'worker_crashed'
  /** A rank's runner threw (while starting or executing); the executor is dead, as its peers may be stuck. */
  | 'rank_failed'
  /** The executor was used after `close()`. */
  | 'executor_closed';

const executorErrorMarker = Symbol.for('pagoda.parallel.error.ExecutorError');

/**
 * An executor cannot run: a worker crashed or a rank's runner threw. Both are fatal (the other ranks may be waiting
 * in a collective on the failed one), so every pending and later `execute` rejects with the same error. `rank` is
 * the rank that failed; `exitCode` is the worker's exit code when it exited.
 */
export class ExecutorError extends ParallelError {
  private readonly [executorErrorMarker] = true;
  declare readonly code: ExecutorErrorCode;
  readonly rank: number | undefined;
  readonly exitCode: number | undefined;

  constructor(
    code: ExecutorErrorCode,
    message: string,
    options?: { rank?: number; exitCode?: number; cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'ExecutorError';
    this.rank = options?.rank;
    this.exitCode = options?.exitCode;
  }

  static override isInstance(error: unknown): error is ExecutorError {
    return hasMarker(error, executorErrorMarker);
  }
}

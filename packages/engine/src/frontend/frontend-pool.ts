import { Tinypool } from 'tinypool';
import { PagodaEngineError } from '../errors';
import { workerModuleFile } from '../worker-entry';
import { tokenizerDirVariable, type FrontendTask, type FrontendTaskResult } from './frontend-task';
import type { ChatMessage, ChatTemplateOptions } from './text-tokenizer';

export interface FrontendPoolOptions {
  /** Worker processes, started at once and kept (default 2). Each holds its own copy of the tokenizer. */
  readonly size?: number;
  /** The most one render or tokenization may take, in milliseconds (default 10,000); then its worker is stopped. */
  readonly taskTimeoutMs?: number;
  /**
   * Each worker's JavaScript heap limit in MiB (default 1024): a task that needs more ends its worker. A worker whose
   * heap stays above three quarters of it after a task is replaced, so garbage it cannot shed does not accumulate.
   */
  readonly maxHeapMb?: number;
  /** Tasks waiting for a free worker beyond which new ones are refused (default 64 per worker). */
  readonly maxQueue?: number;
}

/** How long a worker may take to start and load its tokenizer. */
const startupTimeoutMs = 120_000;

export type FrontendTaskKind = 'render' | 'encode' | 'decode';

/** A render or tokenization went over its budget: its time, its worker's memory, or the rendering's length. */
export class FrontendBudgetError extends PagodaEngineError {
  constructor(
    readonly budget: 'time' | 'memory' | 'output',
    readonly task: FrontendTaskKind,
    message: string,
    /** For `output`: the rendering's size in UTF-8 bytes. */
    readonly bytes?: number,
  ) {
    super('frontend_budget_exceeded', message);
    this.name = 'FrontendBudgetError';
  }
}

/** Every worker is busy and the queue is full: retry later. */
export class FrontendOverloadedError extends PagodaEngineError {
  constructor(message: string) {
    super('frontend_overloaded', message);
    this.name = 'FrontendOverloadedError';
  }
}

export interface FrontendCallOptions {
  /** Aborting it stops the task (queued or running). */
  readonly signal?: AbortSignal;
}

/**
 * The engine frontend's CPU-heavy work (chat-template rendering and tokenization) on a tinypool pool of worker
 * processes, so that no request, however hostile, holds the caller's event loop or takes its process down: every
 * task has a timeout, can be aborted, and runs under a heap limit. A task over its time or memory costs one
 * worker, which the pool replaces.
 *
 * Why processes and not worker threads: a worker thread's `resourceLimits` stop a heap that grows in small steps,
 * but V8 gives a thread only 16 MiB of grace past its limit, and one allocation bigger than that (a template that
 * doubles a list, `ns.a + ns.a`, allocates a 256 MiB array at once) is a fatal out-of-memory error of the whole
 * process. A child process with `--max-old-space-size` dies alone.
 */
export class FrontendPool {
  private constructor(
    private readonly pool: Tinypool,
    readonly size: number,
    readonly taskTimeoutMs: number,
    readonly maxHeapMb: number,
  ) {}

  /** Starts the workers, each loading the tokenizer of `tokenizerDir`; resolves once all are ready. */
  static async create(tokenizerDir: string, options: FrontendPoolOptions = {}): Promise<FrontendPool> {
    const size = options.size ?? 2;
    const taskTimeoutMs = options.taskTimeoutMs ?? 10_000;
    const maxHeapMb = options.maxHeapMb ?? 1024;
    for (const [name, value, low] of [['size', size, 1], ['taskTimeoutMs', taskTimeoutMs, 1], ['maxHeapMb', maxHeapMb, 64]] as const) {
      if (!Number.isInteger(value) || value < low) throw new PagodaEngineError('invalid_engine_option', `the frontend pool's ${name} must be an integer >= ${low}, got ${value}`);
    }
    const { filename, execArgv } = workerModuleFile('frontend/frontend-worker');
    const pool = new Tinypool({
      filename,
      runtime: 'child_process',
      execArgv: [...execArgv, `--max-old-space-size=${maxHeapMb}`, '--expose-gc'],
      env: { ...definedEnvironment(), [tokenizerDirVariable]: tokenizerDir },
      serialization: 'advanced',
      minThreads: size,
      maxThreads: size,
      idleTimeout: Infinity,
      maxQueue: options.maxQueue ?? 64 * size,
      maxMemoryLimitBeforeRecycle: Math.floor(maxHeapMb * 0.75 * 2 ** 20),
    });
    const frontend = new FrontendPool(pool, size, taskTimeoutMs, maxHeapMb);
    try {
      // As many pings as workers: each waits for its worker to have loaded the tokenizer.
      const startup = AbortSignal.timeout(startupTimeoutMs);
      await Promise.all(Array.from({ length: size }, () => frontend.run({ type: 'ping' }, 'encode', { signal: startup })));
    } catch (error) {
      await pool.destroy();
      throw error;
    }
    return frontend;
  }

  /** Token ids of `text`. */
  async encode(text: string, options: FrontendCallOptions & { addSpecialTokens?: boolean } = {}): Promise<number[]> {
    return (await this.encodeAll([text], options))[0]!;
  }

  /** Token ids of each text, in one task (one request's prompts share its time budget). */
  async encodeAll(texts: readonly string[], options: FrontendCallOptions & { addSpecialTokens?: boolean } = {}): Promise<number[][]> {
    const result = await this.run({ type: 'encode', texts, addSpecialTokens: options.addSpecialTokens ?? true }, 'encode', options);
    return result.tokenIdLists!;
  }

  /** The text of token ids. */
  async decode(tokenIds: readonly number[], options: FrontendCallOptions & { skipSpecialTokens?: boolean } = {}): Promise<string> {
    const result = await this.run({ type: 'decode', tokenIds, skipSpecialTokens: options.skipSpecialTokens ?? true }, 'decode', options);
    return result.text!;
  }

  /**
   * Renders a conversation with the chat template, refusing a rendering over `maxOutputBytes`; with `encode`,
   * tokenizes it in the same task.
   */
  async render(
    messages: readonly ChatMessage[],
    templateOptions: ChatTemplateOptions,
    options: FrontendCallOptions & { maxOutputBytes: number; encode?: { addSpecialTokens: boolean } },
  ): Promise<{ text: string; tokenIds: number[] | undefined }> {
    const task: FrontendTask = {
      type: 'render',
      messages,
      options: templateOptions,
      maxOutputBytes: options.maxOutputBytes,
      ...(options.encode === undefined ? {} : { encodeWith: options.encode }),
    };
    const result = await this.run(task, 'render', options);
    return { text: result.text!, tokenIds: result.tokenIds };
  }

  /** The worker processes' ids (to watch their memory). */
  get workerPids(): number[] {
    return this.pool.threads.map((worker) => worker.threadId);
  }

  /** Asks each idle worker to collect its garbage, for memory measurements. */
  async collectGarbage(): Promise<void> {
    await Promise.all(Array.from({ length: this.size }, () => this.run({ type: 'gc' }, 'encode', {})));
  }

  /** Stops the workers; tasks still queued or running are rejected. */
  async close(): Promise<void> {
    await this.pool.destroy();
  }

  /**
   * Runs one task. Its time budget starts when tinypool hands it to a worker (the moment it sets the task's
   * channel), not when it is queued: a task waiting while a worker restarts after an attack keeps its whole budget.
   */
  private async run(task: FrontendTask, kind: FrontendTaskKind, { signal }: FrontendCallOptions) {
    const budget = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    // While the pool starts, tinypool hands tasks to workers before they have loaded (the pings wait for that).
    const channel = {
      onMessage: () => {
        if (task.type !== 'ping') timer = setTimeout(() => budget.abort(), this.taskTimeoutMs);
      },
    };
    let result: FrontendTaskResult;
    try {
      result = (await this.pool.run(task, { signal: signal === undefined ? budget.signal : AbortSignal.any([signal, budget.signal]), channel })) as FrontendTaskResult;
    } catch (error) {
      throw this.describeFailure(error, kind, budget.signal, signal);
    } finally {
      clearTimeout(timer);
    }
    if (result.type === 'error') throw new PagodaEngineError(result.code, result.message);
    if (result.type === 'too-long') {
      throw new FrontendBudgetError('output', kind, `the rendered chat is ${result.bytes} bytes, over the limit of ${(task as { maxOutputBytes: number }).maxOutputBytes}`, result.bytes);
    }
    return result;
  }

  private describeFailure(error: unknown, kind: FrontendTaskKind, budget: AbortSignal, signal: AbortSignal | undefined): Error {
    const what = { render: 'rendering the chat template', encode: 'tokenizing the prompt', decode: 'detokenizing' }[kind];
    if (signal?.aborted) return signal.reason instanceof Error ? signal.reason : new PagodaEngineError('aborted', `${what} was aborted`);
    if (budget.aborted) return new FrontendBudgetError('time', kind, `${what} took longer than ${this.taskTimeoutMs} ms and was stopped`);
    if (error instanceof Error && /exited unexpectedly/i.test(error.message)) {
      // The only way a worker ends in the middle of a task on its own: V8 ran out of heap (--max-old-space-size).
      return new FrontendBudgetError('memory', kind, `${what} needed more than its ${this.maxHeapMb} MiB of memory and was stopped`);
    }
    if (error instanceof Error && /queue is at limit/i.test(error.message)) {
      return new FrontendOverloadedError(`the tokenizer pool is full (${this.size} workers busy, ${this.pool.queueSize} tasks waiting); retry later`);
    }
    return new PagodaEngineError('frontend_task_failed', `${what} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/** This process's environment without unset entries (a child process's `env` must hold strings). */
function definedEnvironment(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

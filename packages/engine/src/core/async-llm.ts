import type { SamplingParams } from '@pagoda/sampling';
import type { SchedulerStats } from '@pagoda/scheduler';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PagodaEngineError } from '../errors';
import type { ChatMessage, ChatTemplateOptions } from '../frontend/text-tokenizer';
import type { EngineOptions } from './engine-options';
import { loadModelContext, type ModelContext, prepareRequest, type PromptInput, renderChat } from './engine-setup';
import { OutputProcessor } from './output-processor';
import type { EngineStats, RequestOutput } from './request-output';
import type { EngineWorkerData, FromWorkerMessage, SerializedError, ToWorkerMessage } from './worker-protocol';
import type { StartupMemory } from './process-memory';

/** The engine core died (its thread crashed or exited); nothing more will be served. */
export class EngineDeadError extends PagodaEngineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('engine_dead', message, options);
    this.name = 'EngineDeadError';
  }
}

/** A request the engine core refused after the frontend accepted it. */
export class EngineRequestError extends PagodaEngineError {
  readonly param: string | undefined;

  constructor(error: SerializedError) {
    super(error.code ?? 'request_failed', error.message);
    this.name = 'EngineRequestError';
    this.param = error.param;
  }
}

export type EngineHealth = 'ready' | 'dead' | 'closed';

/** One online request. Give a prompt (text or token ids) or chat messages. */
export interface GenerateRequest {
  requestId?: string;
  prompt?: PromptInput;
  messages?: readonly ChatMessage[];
  chatTemplateOptions?: ChatTemplateOptions;
  samplingParams?: SamplingParams;
  priority?: number;
  cacheSalt?: string;
}

interface Stream {
  readonly deltas: RequestOutput[];
  error: Error | undefined;
  done: boolean;
  notify: (() => void) | undefined;
}

/**
 * Online inference. `generate` streams each request's output as deltas while other requests come and go; the
 * engine core runs in a worker thread, so this thread's event loop stays free during model runs.
 *
 * ```ts
 * const engine = await AsyncLLM.create('./my-model');
 * for await (const delta of engine.generate({ prompt: 'Hello', samplingParams: { maxTokens: 32 } })) {
 *   process.stdout.write(delta.outputs[0]?.text ?? '');
 * }
 * await engine.close();
 * ```
 */
export class AsyncLLM {
  private readonly processor: OutputProcessor;
  private readonly streams = new Map<string, Stream>();
  private latestStats: SchedulerStats;
  private state: EngineHealth = 'ready';
  private deathError: EngineDeadError | undefined;
  private nextRequestId = 0;
  private readonly exited: Promise<void>;

  private constructor(
    readonly context: ModelContext,
    private readonly worker: Worker,
    initialStats: SchedulerStats,
    /** What setting up the engine core found (on a GPU: the memory plan and the KV pool self-check). */
    readonly startupLog: readonly string[] = [],
    /** The process's memory around start-up beside what the model needs. */
    readonly startupMemory: StartupMemory | undefined = undefined,
  ) {
    this.processor = new OutputProcessor(context.tokenizer);
    this.latestStats = initialStats;
    worker.on('message', (message: FromWorkerMessage) => {
      try {
        this.onMessage(message);
      } catch (error) {
        // A bug in output processing must not take the caller's process down: the engine is dead instead.
        this.die(`processing the engine core's outputs failed: ${(error as Error).message}`, error);
        // Stop the core between steps (terminating its thread mid-run could abort the process).
        this.worker.postMessage({ type: 'shutdown' } satisfies ToWorkerMessage);
      }
    });
    worker.on('error', (error) => this.die(`the engine core crashed: ${error.message}`, error));
    this.exited = new Promise((resolve) =>
      worker.once('exit', (code) => {
        if (this.state === 'ready') this.die(`the engine core exited unexpectedly (exit code ${code})`);
        resolve();
      }),
    );
  }

  /** Loads the tokenizer here and the model in a new engine-core thread; resolves once both are ready. */
  static async create(model: string, options: EngineOptions = {}): Promise<AsyncLLM> {
    const context = await loadModelContext(model, options);
    const workerData: EngineWorkerData = { modelDir: context.modelDir, options: context.options };
    const worker = startWorker(workerData);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- listeners of different events share one list
    const listeners: Array<[string, (...args: any[]) => void]> = [];
    const ready = await new Promise<Extract<FromWorkerMessage, { type: 'ready' }>>((resolve, reject) => {
      listeners.push(
        ['message', (message: FromWorkerMessage) => {
          if (message.type === 'ready') resolve(message);
          else if (message.type === 'fatal') reject(restoreError(message.error));
        }],
        ['error', reject],
        ['exit', (code: number) => reject(new EngineDeadError(`the engine core exited while loading (exit code ${code})`))],
      );
      for (const [event, listener] of listeners) worker.on(event, listener);
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    // Only our own listeners: removeAllListeners would also drop the Worker's internal ones that deliver messages.
    for (const [event, listener] of listeners) worker.off(event, listener);
    const planned = { ...context, options: { ...context.options, kvCache: ready.kvCache } };
    return new AsyncLLM(planned, worker, ready.stats, ready.startupLog, ready.startupMemory);
  }

  get tokenizer() {
    return this.context.tokenizer;
  }

  health(): EngineHealth {
    return this.state;
  }

  /** The engine core's latest statistics (updated after every step), with the tokens in and out so far. */
  makeStats(): EngineStats {
    return { ...this.latestStats, ...this.processor.totals };
  }

  /**
   * Starts a request and streams its deltas. Invalid input throws here, before anything is queued. Breaking out
   * of the loop (or `return()` on the iterator) aborts the request.
   */
  generate(request: GenerateRequest): AsyncIterableIterator<RequestOutput> {
    this.assertServing();
    const requestId = request.requestId ?? `async-${this.nextRequestId++}`;
    if (this.processor.has(requestId) || this.streams.has(requestId)) {
      throw new PagodaEngineError('duplicate_request_id', `request id ${requestId} is already in use`);
    }
    const input = request.messages !== undefined ? renderChat(this.context, request.messages, request.chatTemplateOptions) : request.prompt;
    if (input === undefined) throw new PagodaEngineError('invalid_request', 'a request needs a prompt or messages');
    const prepared = prepareRequest(this.context, requestId, input, request.samplingParams, {
      addSpecialTokens: request.messages === undefined,
      ...(request.priority === undefined ? {} : { priority: request.priority }),
      ...(request.cacheSalt === undefined ? {} : { cacheSalt: request.cacheSalt }),
    });
    const stream: Stream = { deltas: [], error: undefined, done: false, notify: undefined };
    this.streams.set(requestId, stream);
    this.post({ type: 'add', requests: this.processor.addRequest(prepared) });
    return this.iterate(requestId, stream);
  }

  /** Aborts a request; its stream ends with a final delta whose finish reason is `abort`. Unknown ids are ignored. */
  abort(requestId: string): void {
    const aborted = this.processor.abortRequest(requestId);
    if (aborted === undefined) return;
    if (aborted.coreRequestIds.length > 0) this.post({ type: 'abort', requestIds: aborted.coreRequestIds });
    this.push(requestId, aborted.output);
  }

  /** Stops the engine core and frees the model. Requests still running end with finish reason `abort`. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    for (const requestId of [...this.streams.keys()]) this.abort(requestId);
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    if (wasReady) this.post({ type: 'shutdown' });
    const timeout = setTimeout(() => void this.worker.terminate(), 10_000);
    await this.exited;
    clearTimeout(timeout);
  }

  private onMessage(message: FromWorkerMessage): void {
    switch (message.type) {
      case 'outputs': {
        this.latestStats = message.stats;
        const processed = this.processor.processOutputs(message.outputs);
        if (processed.requestsToStop.length > 0) this.post({ type: 'stop', requestIds: processed.requestsToStop });
        if (processed.requestsToAdd.length > 0) this.post({ type: 'add', requests: processed.requestsToAdd });
        for (const delta of processed.deltas) this.push(delta.requestId, delta);
        break;
      }
      case 'request-error': {
        const requestId = this.processor.requestIdOf(message.requestId);
        if (requestId === undefined) break;
        const aborted = this.processor.abortRequest(requestId);
        if (aborted !== undefined && aborted.coreRequestIds.length > 0) this.post({ type: 'abort', requestIds: aborted.coreRequestIds });
        this.fail(requestId, new EngineRequestError(message.error));
        break;
      }
      case 'stats':
        this.latestStats = message.stats;
        break;
      case 'fatal':
        this.die(`the engine core failed: ${message.error.message}`, restoreError(message.error));
        break;
      case 'ready':
        break;
    }
  }

  private push(requestId: string, delta: RequestOutput): void {
    const stream = this.streams.get(requestId);
    if (stream === undefined) return;
    stream.deltas.push(delta);
    if (delta.finished) {
      stream.done = true;
      this.streams.delete(requestId);
    }
    stream.notify?.();
  }

  private fail(requestId: string, error: Error): void {
    const stream = this.streams.get(requestId);
    if (stream === undefined) return;
    stream.error = error;
    stream.done = true;
    this.streams.delete(requestId);
    stream.notify?.();
  }

  private die(message: string, cause?: unknown): void {
    if (this.state !== 'ready') return;
    this.state = 'dead';
    this.deathError = new EngineDeadError(message, { cause });
    for (const requestId of [...this.streams.keys()]) this.fail(requestId, this.deathError);
  }

  private assertServing(): void {
    if (this.state === 'dead') throw this.deathError!;
    if (this.state === 'closed') throw new PagodaEngineError('engine_closed', 'this engine is closed');
  }

  private post(message: ToWorkerMessage): void {
    if (this.state !== 'dead') this.worker.postMessage(message);
  }

  private async *iterate(requestId: string, stream: Stream): AsyncIterableIterator<RequestOutput> {
    let finished = false;
    try {
      while (true) {
        while (stream.deltas.length > 0) {
          const delta = stream.deltas.shift()!;
          if (delta.finished) finished = true;
          yield delta;
          if (finished) return;
        }
        if (stream.error !== undefined) {
          finished = true;
          throw stream.error;
        }
        if (stream.done) return;
        await new Promise<void>((resolve) => (stream.notify = resolve));
        stream.notify = undefined;
      }
    } finally {
      // The consumer stopped early (a client went away): abort, freeing the request's KV blocks.
      if (!finished && this.state === 'ready') this.abort(requestId);
    }
  }
}

/**
 * Starts the engine-core worker: the built `engine-core-worker.js` beside this module in a package install; in this
 * repository's tests (running TypeScript from source) the `.ts` source, loaded through tsx's module hooks.
 */
function startWorker(workerData: EngineWorkerData): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./engine-core-worker.js', import.meta.url), { workerData });
  // tsx's ESM entry (its CommonJS one cannot register hooks from a worker's ESM bootstrap).
  const tsxApi = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs')).href;
  const entry = new URL('./engine-core-worker.ts', import.meta.url).href;
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { eval: true, workerData, execArgv: ['--conditions=@pagoda/source'] });
}

function restoreError(error: SerializedError): Error {
  const restored = new PagodaEngineError(error.code ?? 'engine_error', error.message);
  if (error.stack !== undefined) restored.stack = error.stack;
  return restored;
}

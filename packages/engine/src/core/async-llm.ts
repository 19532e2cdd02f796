import type { NormalizedSamplingParams, SamplingParams } from '@pagoda/sampling';
import type { SchedulerStats } from '@pagoda/scheduler';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PagodaEngineError } from '../errors';
import { FrontendBudgetError, type FrontendCallOptions, FrontendPool } from '../frontend/frontend-pool';
import type { ChatMessage, ChatTemplateOptions } from '../frontend/text-tokenizer';
import type { EngineOptions } from './engine-options';
import {
  checkPromptBytes,
  loadModelContext,
  maxPromptBytes,
  type ModelContext,
  prepareRequest,
  type PromptInput,
  resolveSamplingParams,
  runnerMismatch,
} from './engine-setup';
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

/** One prompt to embed with a pooling model (AsyncLLM.embed). */
export interface EmbedRequest {
  requestId?: string;
  prompt: PromptInput;
  priority?: number;
  signal?: AbortSignal;
}

/** A pooling model's vector for a prompt. */
export interface EmbeddingOutput {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  /** `hiddenSize` numbers: the pooled final-norm hidden state, unit length when the pooler normalizes. */
  readonly embedding: readonly number[];
  /** Prompt tokens found in the prefix cache (last-token pooling only; mean pooling computes every position). */
  readonly numCachedTokens: number;
}

interface Stream {
  readonly deltas: RequestOutput[];
  error: Error | undefined;
  done: boolean;
  notify: (() => void) | undefined;
  /** While its text is being tokenized off the event loop: what stops that, and the request's n. */
  readonly tokenizing?: { readonly controller: AbortController; readonly n: number };
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
    /** Chat templates and tokenization of text run here, in worker processes, never on the caller's event loop. */
    readonly tokenizerPool: FrontendPool,
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

  /**
   * Loads the tokenizer here (for detokenizing), in the tokenizer pool's workers, and the model in a new engine-core
   * thread; resolves once all are ready.
   */
  static async create(model: string, options: EngineOptions = {}): Promise<AsyncLLM> {
    const context = await loadModelContext(model, options);
    const frontendStarting = FrontendPool.create(context.modelDir, {
      size: context.options.tokenizerPoolSize,
      taskTimeoutMs: context.options.tokenizerPoolTimeoutMs,
      maxHeapMb: context.options.tokenizerPoolMaxHeapMb,
    });
    // A failure below must not leave the pool's processes behind.
    frontendStarting.catch(() => undefined);
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
      await frontendStarting.then((frontend) => frontend.close(), () => undefined);
      throw error;
    });
    // Only our own listeners: removeAllListeners would also drop the Worker's internal ones that deliver messages.
    for (const [event, listener] of listeners) worker.off(event, listener);
    const frontend = await frontendStarting.catch(async (error: unknown) => {
      worker.postMessage({ type: 'shutdown' } satisfies ToWorkerMessage);
      throw error;
    });
    const planned = { ...context, options: { ...context.options, kvCache: ready.kvCache } };
    return new AsyncLLM(planned, worker, frontend, ready.stats, ready.startupLog, ready.startupMemory);
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
   * Token ids of `text`, tokenized in the tokenizer pool. A text too long for the context whatever it tokenizes to
   * is refused at once (`RequestRejectedError`, `context_length_exceeded`), before any tokenizing.
   */
  async encode(text: string, options: FrontendCallOptions & { addSpecialTokens?: boolean } = {}): Promise<number[]> {
    this.assertServing();
    checkPromptBytes(this.context, Buffer.byteLength(text, 'utf8'), 'prompt');
    return this.tokenizerPool.encode(text, options);
  }

  /** Token ids of each text, tokenized in one task of the tokenizer pool; each text is bounded as in {@link encode}. */
  async encodeAll(texts: readonly string[], options: FrontendCallOptions & { addSpecialTokens?: boolean } = {}): Promise<number[][]> {
    this.assertServing();
    for (const text of texts) checkPromptBytes(this.context, Buffer.byteLength(text, 'utf8'), 'prompt');
    return this.tokenizerPool.encodeAll(texts, options);
  }

  /** The text of token ids, detokenized in the tokenizer pool (special tokens skipped unless asked). */
  async decode(tokenIds: readonly number[], options: FrontendCallOptions & { skipSpecialTokens?: boolean } = {}): Promise<string> {
    this.assertServing();
    return this.tokenizerPool.decode(tokenIds, options);
  }

  /**
   * Renders a conversation with the chat template and tokenizes the result (adding no special tokens unless asked), in
   * the tokenizer pool, under its time and memory budget; a rendering too long for the context is refused.
   */
  async applyChatTemplate(
    messages: readonly ChatMessage[],
    options: ChatTemplateOptions & FrontendCallOptions & { addSpecialTokens?: boolean } = {},
  ): Promise<{ prompt: string; promptTokenIds: number[] }> {
    this.assertServing();
    if (messages.length === 0) throw new PagodaEngineError('invalid_messages', 'messages must contain at least one message');
    const { signal, addSpecialTokens = false, ...templateOptions } = options;
    try {
      const rendered = await this.tokenizerPool.render(messages, templateOptions, {
        maxOutputBytes: maxPromptBytes(this.context),
        encode: { addSpecialTokens },
        ...(signal === undefined ? {} : { signal }),
      });
      return { prompt: rendered.text, promptTokenIds: rendered.tokenIds! };
    } catch (error) {
      if (error instanceof FrontendBudgetError && error.budget === 'output') checkPromptBytes(this.context, error.bytes!, 'messages');
      throw error;
    }
  }

  /**
   * Starts a request and streams its deltas. Invalid parameters throw here, before anything is queued; a text
   * prompt or chat messages are tokenized off the event loop first, and what only their tokens can show (a prompt
   * too long for the context) makes the stream throw. Breaking out of the loop (or `return()` on the iterator)
   * aborts the request.
   */
  generate(request: GenerateRequest): AsyncIterableIterator<RequestOutput> {
    this.assertServing();
    const refused = runnerMismatch(this.context, 'generate');
    if (refused !== undefined) throw refused;
    return this.startRequest(request);
  }

  /**
   * A pooling model's vector for one prompt (text, tokenized off the event loop, or token ids): the final norm's
   * hidden states pooled as the pooler config says (the last token's, or their mean), normalized unless it says
   * not to. It goes through the scheduler with generating requests' prefills; `signal` aborts it.
   */
  async embed(request: EmbedRequest): Promise<EmbeddingOutput> {
    this.assertServing();
    const refused = runnerMismatch(this.context, 'embed');
    if (refused !== undefined) throw refused;
    const requestId = request.requestId ?? `embed-${this.nextRequestId++}`;
    const stream = this.startRequest({
      requestId,
      prompt: request.prompt,
      samplingParams: { maxTokens: 0 },
      ...(request.priority === undefined ? {} : { priority: request.priority }),
    });
    const onAbort = () => this.abort(requestId);
    if (request.signal?.aborted === true) onAbort();
    else request.signal?.addEventListener('abort', onAbort, { once: true });
    let last: RequestOutput | undefined;
    try {
      for await (const delta of stream) last = delta;
    } finally {
      request.signal?.removeEventListener('abort', onAbort);
    }
    if (last?.embedding === undefined) {
      throw new PagodaEngineError('request_aborted', `embedding request ${requestId} ended before its prompt was computed`);
    }
    return { requestId, promptTokenIds: last.promptTokenIds, embedding: last.embedding, numCachedTokens: last.numCachedTokens };
  }

  private startRequest(request: GenerateRequest): AsyncIterableIterator<RequestOutput> {
    const requestId = request.requestId ?? `async-${this.nextRequestId++}`;
    if (this.processor.has(requestId) || this.streams.has(requestId)) {
      throw new PagodaEngineError('duplicate_request_id', `request id ${requestId} is already in use`);
    }
    const samplingParams = resolveSamplingParams(this.context, request.samplingParams);
    const extra = {
      normalized: true,
      ...(request.priority === undefined ? {} : { priority: request.priority }),
      ...(request.cacheSalt === undefined ? {} : { cacheSalt: request.cacheSalt }),
    };
    const text = request.messages === undefined ? promptText(request.prompt) : undefined;
    if (request.messages === undefined && text === undefined) {
      if (request.prompt === undefined) throw new PagodaEngineError('invalid_request', 'a request needs a prompt or messages');
      // Token ids: nothing to tokenize, so the request is checked and queued now.
      const prepared = prepareRequest(this.context, requestId, request.prompt, samplingParams, extra);
      const stream: Stream = { deltas: [], error: undefined, done: false, notify: undefined };
      this.streams.set(requestId, stream);
      this.post({ type: 'add', requests: this.processor.addRequest(prepared) });
      return this.iterate(requestId, stream);
    }
    if (text !== undefined) checkPromptBytes(this.context, Buffer.byteLength(text, 'utf8'), 'prompt');
    const tokenizing = new AbortController();
    const stream: Stream = { deltas: [], error: undefined, done: false, notify: undefined, tokenizing: { controller: tokenizing, n: samplingParams.n } };
    this.streams.set(requestId, stream);
    const tokenized =
      request.messages !== undefined
        ? this.applyChatTemplate(request.messages, { ...request.chatTemplateOptions, signal: tokenizing.signal })
        : this.encode(text!, { signal: tokenizing.signal }).then((promptTokenIds) => ({ prompt: text!, promptTokenIds }));
    tokenized.then(
      (input) => this.admitTokenized(requestId, stream, input, samplingParams, extra, request.messages === undefined),
      (error: unknown) => {
        if (this.streams.get(requestId) === stream) this.fail(requestId, error as Error);
      },
    );
    return this.iterate(requestId, stream);
  }

  /** Queues a request whose text has been tokenized, unless it was aborted meanwhile. */
  private admitTokenized(
    requestId: string,
    stream: Stream,
    input: { prompt: string; promptTokenIds: readonly number[] },
    samplingParams: NormalizedSamplingParams,
    extra: { normalized: boolean; priority?: number; cacheSalt?: string },
    addSpecialTokens: boolean,
  ): void {
    if (this.streams.get(requestId) !== stream || this.state !== 'ready') return;
    try {
      const prepared = prepareRequest(this.context, requestId, input, samplingParams, { ...extra, addSpecialTokens });
      this.post({ type: 'add', requests: this.processor.addRequest(prepared) });
    } catch (error) {
      this.fail(requestId, error as Error);
    }
  }

  /** Aborts a request; its stream ends with a final delta whose finish reason is `abort`. Unknown ids are ignored. */
  abort(requestId: string): void {
    const pending = this.streams.get(requestId);
    if (pending?.tokenizing !== undefined && !this.processor.has(requestId)) {
      // Still tokenizing: stop that, and end the stream as the core would have.
      pending.tokenizing.controller.abort();
      this.push(requestId, abortedBeforeStart(requestId, pending.tokenizing.n));
      return;
    }
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
    await Promise.all([this.exited, this.tokenizerPool.close()]);
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

/** A request's text prompt, if it has one to tokenize (not token ids, not both). */
function promptText(prompt: PromptInput | undefined): string | undefined {
  if (typeof prompt === 'string') return prompt;
  if (typeof prompt === 'object' && prompt !== null && 'prompt' in prompt && !('promptTokenIds' in prompt)) return prompt.prompt;
  return undefined;
}

/** The last delta of a request aborted while its prompt was being tokenized: every completion empty, aborted. */
function abortedBeforeStart(requestId: string, n: number): RequestOutput {
  const outputs = Array.from({ length: n }, (_, index) => ({
    index,
    text: '',
    tokenIds: [],
    logprobs: undefined,
    finishReason: 'abort' as const,
    stopReason: undefined,
  }));
  return { requestId, prompt: undefined, promptTokenIds: [], outputs, finished: true, numCachedTokens: 0, metrics: undefined };
}

function restoreError(error: SerializedError): Error {
  const restored = new PagodaEngineError(error.code ?? 'engine_error', error.message);
  if (error.stack !== undefined) restored.stack = error.stack;
  return restored;
}

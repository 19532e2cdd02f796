import { structuredOutputsKey, structuredOutputsSpec, type StructuredOutputsParams } from '@pagoda/sampling';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { SerializedError } from '../core/worker-protocol';
import { PagodaEngineError, StructuredOutputError } from '../errors';
import { workerEntry } from '../worker-entry';
import { bitmaskWords } from './backend';
import type { FromGrammarWorkerMessage, GrammarWorkerData, ToGrammarWorkerMessage } from './grammar-protocol';
import { type ReasoningMarkers, reasoningEndedIn } from './reasoning';
import { StructuredOutputRequest } from './structured-output-request';

export interface StructuredOutputManagerOptions {
  /** The checkpoint folder: the grammar worker reads its `tokenizer.json`. */
  readonly modelDir: string;
  /** The model's vocabulary size (config.json's `vocab_size`): the width of every bitmask row. */
  readonly vocabSize: number;
  /** vLLM's `disable_any_whitespace` (default false). */
  readonly disableAnyWhitespace?: boolean;
  /** With a reasoning parser: constraints start after its end marker, in the prompt or the output. */
  readonly reasoning?: ReasoningMarkers;
  /** A request's grammar is ready: the scheduler may run it. */
  readonly onReady: (requestId: string) => void;
  /** A request's constraint failed to compile (or the grammar worker cannot serve): the request ends with this. */
  readonly onError: (requestId: string, error: PagodaEngineError) => void;
}

/** One step's bitmasks for the constrained rows among a batch's sampled rows. */
export interface PendingBitmasks {
  /** Per sampled row: its row in `bitmask`, or -1 for a row without constraint (or still reasoning). */
  readonly rowOf: Int32Array;
  readonly bitmask: Promise<Int32Array>;
  readonly words: number;
}

/** What the grammar worker measured, for benchmarks and logs. */
export interface StructuredOutputStats {
  setupMs: number | undefined;
  tokenizerInfoMs: number | undefined;
  readonly compileMs: number[];
  /** Per fill: the worker's time for the whole batch's masks, and the number of rows. */
  readonly fills: Array<{ readonly ms: number; readonly rows: number }>;
  rejectedTokens: number;
  workerRestarts: number;
}

interface PendingFill {
  readonly requestIds: readonly string[];
  resolve(bitmask: Int32Array): void;
  reject(error: Error): void;
}

/**
 * The engine core's structured-output manager (vLLM's `StructuredOutputManager`): it compiles each constrained
 * request's grammar in the background and keeps its matcher following the request's tokens, both in a grammar
 * worker thread (`grammar-worker.ts`), so the step loop never waits on a compilation:
 *
 * ```text
 * addRequest ──compile──► worker ──compiled──► onReady → scheduler.markStructuredOutputReady
 * step N:   submit: requestBitmasks(sampled rows) ──fill──► worker (runs while the model runs)
 *           complete: await bitmasks → sampler → acceptTokens ──accept──► worker (before step N + 1's fill)
 * ```
 *
 * Messages to the worker are handled in order, so a fill always sees every token accepted before it. Unconstrained
 * requests never touch the worker, and the worker starts with the first constrained request.
 *
 * XGrammar's WASM build aborts on a schema or grammar it refuses, and its module is unreliable afterwards (its
 * matchers misbehave, a repeated compile can hang). So after a failed compilation the worker is replaced: the new
 * one recompiles every live request's grammar and replays its accepted tokens, and unanswered fills are asked again.
 * A refused spec is remembered, so a repeat fails at once.
 */
export class StructuredOutputManager {
  private worker: Worker | undefined;
  private workerData: GrammarWorkerData | undefined;
  private readonly requests = new Map<string, StructuredOutputRequest>();
  private readonly failedKeys = new Map<string, SerializedError>();
  private readonly pendingFills = new Map<number, PendingFill>();
  private pendingAccepts: Array<readonly [string, readonly number[]]> = [];
  private nextFillId = 0;
  private unavailable: PagodaEngineError | undefined;
  private ready = false;
  readonly words: number;
  readonly stats: StructuredOutputStats = {
    setupMs: undefined,
    tokenizerInfoMs: undefined,
    compileMs: [],
    fills: [],
    rejectedTokens: 0,
    workerRestarts: 0,
  };

  constructor(private readonly options: StructuredOutputManagerOptions) {
    this.words = bitmaskWords(options.vocabSize);
  }

  /** Starts compiling the request's constraint; `onReady` or `onError` follows. Throws for an invalid spec. */
  addRequest(requestId: string, params: StructuredOutputsParams, promptTokenIds: ArrayLike<number>, eosTokenIds: readonly number[]): void {
    if (this.unavailable !== undefined) throw this.unavailable;
    const spec = structuredOutputsSpec(params);
    const key = structuredOutputsKey(spec);
    const failed = this.failedKeys.get(key);
    if (failed !== undefined) throw restoreError(failed, spec.kind);
    const reasoning = this.options.reasoning;
    const request = new StructuredOutputRequest(requestId, key, spec, reasoning === undefined || reasoningEndedIn(promptTokenIds, reasoning));
    this.requests.set(requestId, request);
    this.post({ type: 'compile', requestId, key, spec }, eosTokenIds);
  }

  /** Whether the request has a constraint this manager follows. */
  has(requestId: string): boolean {
    return this.requests.has(requestId);
  }

  /**
   * Asks the worker for the next-token bitmasks of the constrained rows among `sampledRequestIds` (in the batch's
   * row order); undefined when none of them needs one, and then nothing is posted.
   */
  requestBitmasks(sampledRequestIds: readonly string[]): PendingBitmasks | undefined {
    let rowOf: Int32Array | undefined;
    const requestIds: string[] = [];
    for (let row = 0; row < sampledRequestIds.length; row += 1) {
      const request = this.requests.get(sampledRequestIds[row]!);
      if (request === undefined || !request.needsBitmask) continue;
      rowOf ??= new Int32Array(sampledRequestIds.length).fill(-1);
      rowOf[row] = requestIds.length;
      requestIds.push(request.requestId);
    }
    if (rowOf === undefined) return undefined;
    this.flushAccepts();
    const fillId = this.nextFillId++;
    const bitmask = new Promise<Int32Array>((resolve, reject) => this.pendingFills.set(fillId, { requestIds, resolve, reject }));
    this.post({ type: 'fill', fillId, requestIds });
    return { rowOf, bitmask, words: this.words };
  }

  /**
   * The request's new tokens, as the scheduler appended them. Tokens up to and including the reasoning's end marker
   * are not the grammar's; the rest are sent to its matcher before the next fill.
   */
  acceptTokens(requestId: string, tokenIds: readonly number[]): void {
    const request = this.requests.get(requestId);
    if (request === undefined || request.status !== 'ready' || request.rejected || tokenIds.length === 0) return;
    let start = 0;
    if (!request.reasoningEnded) {
      const end = this.options.reasoning === undefined ? -1 : tokenIds.lastIndexOf(this.options.reasoning.endTokenId);
      if (end < 0) return;
      request.reasoningEnded = true;
      start = end + 1;
    }
    if (start >= tokenIds.length) return;
    const accepted = start === 0 ? tokenIds : tokenIds.slice(start);
    for (const tokenId of accepted) request.acceptedTokenIds.push(tokenId);
    this.pendingAccepts.push([requestId, accepted]);
  }

  /** Forgets finished or aborted requests (their matchers are freed). */
  removeRequests(requestIds: readonly string[]): void {
    const removed = requestIds.filter((requestId) => this.requests.delete(requestId));
    if (removed.length > 0 && this.worker !== undefined) this.post({ type: 'remove', requestIds: removed });
    else this.updateRef();
  }

  async shutdown(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    for (const fill of this.pendingFills.values()) fill.reject(new PagodaEngineError('engine_closed', 'the grammar worker was shut down'));
    this.pendingFills.clear();
    if (worker !== undefined) await worker.terminate();
  }

  private flushAccepts(): void {
    if (this.pendingAccepts.length === 0) return;
    this.post({ type: 'accept', tokens: this.pendingAccepts });
    this.pendingAccepts = [];
  }

  private post(message: ToGrammarWorkerMessage, eosTokenIds?: readonly number[]): void {
    if (this.worker === undefined) {
      this.workerData ??= {
        tokenizerPath: join(this.options.modelDir, 'tokenizer.json'),
        vocabSize: this.options.vocabSize,
        stopTokenIds: eosTokenIds ?? [],
        disableAnyWhitespace: this.options.disableAnyWhitespace ?? false,
      };
      this.worker = this.startWorker();
    }
    this.worker.postMessage(message);
    this.updateRef();
  }

  /** The worker holds the process open only while a compilation or a fill is owed. */
  private updateRef(): void {
    if (this.worker === undefined) return;
    let owed = this.pendingFills.size > 0;
    if (!owed) for (const request of this.requests.values()) if (request.status === 'compiling') owed = true;
    if (owed) this.worker.ref();
    else this.worker.unref();
  }

  private startWorker(): Worker {
    const entry = workerEntry('structured-output/grammar-worker');
    const worker = new Worker(entry.url, { workerData: this.workerData, ...(entry.execArgv ? { execArgv: entry.execArgv } : {}) });
    // Only pending work keeps the process alive (see updateRef): an idle grammar worker alone must not.
    worker.unref();
    worker.on('message', (message: FromGrammarWorkerMessage) => {
      if (worker === this.worker) this.onMessage(message);
    });
    const lost = (reason: string) => {
      if (worker !== this.worker) return;
      this.worker = undefined;
      if (this.ready) {
        this.restart();
      } else {
        this.fail(new PagodaEngineError('structured_outputs_unavailable', `the grammar worker could not start: ${reason}`));
      }
    };
    worker.on('error', (error) => lost(error.message));
    worker.on('exit', (code) => lost(`it exited with code ${code}`));
    return worker;
  }

  private onMessage(message: FromGrammarWorkerMessage): void {
    this.handle(message);
    this.updateRef();
  }

  private handle(message: FromGrammarWorkerMessage): void {
    switch (message.type) {
      case 'ready':
        this.ready = true;
        this.stats.setupMs ??= message.setupMs;
        this.stats.tokenizerInfoMs ??= message.tokenizerInfoMs;
        break;
      case 'compiled': {
        const request = this.requests.get(message.requestId);
        if (message.error !== undefined) {
          this.failedKeys.set(message.key, message.error);
          if (request !== undefined && request.key === message.key) {
            this.requests.delete(message.requestId);
            this.options.onError(message.requestId, restoreError(message.error, request.spec.kind));
          }
          this.restart();
          break;
        }
        if (message.compileMs > 0) this.stats.compileMs.push(message.compileMs);
        if (request !== undefined && request.status === 'compiling') {
          request.status = 'ready';
          this.options.onReady(message.requestId);
        }
        break;
      }
      case 'bitmasks': {
        const fill = this.pendingFills.get(message.fillId);
        if (fill === undefined) break;
        this.pendingFills.delete(message.fillId);
        this.stats.fills.push({ ms: message.fillMs, rows: fill.requestIds.length });
        if (this.stats.fills.length > 10_000) this.stats.fills.splice(0, 5_000);
        fill.resolve(message.bitmask);
        break;
      }
      case 'rejected': {
        const request = this.requests.get(message.requestId);
        if (request !== undefined) request.rejected = true;
        this.stats.rejectedTokens += 1;
        break;
      }
      case 'fatal':
        this.worker?.terminate().catch(() => undefined);
        this.worker = undefined;
        this.fail(new PagodaEngineError('structured_outputs_unavailable', `the grammar worker failed: ${message.error.message}`));
        break;
    }
  }

  /** A fresh worker that rebuilds every live request's matcher and answers the fills still owed. */
  private restart(): void {
    const old = this.worker;
    this.worker = undefined;
    old?.terminate().catch(() => undefined);
    this.stats.workerRestarts += 1;
    if (this.requests.size === 0 && this.pendingFills.size === 0) return;
    for (const request of this.requests.values()) {
      this.post({ type: 'compile', requestId: request.requestId, key: request.key, spec: request.spec });
      if (request.acceptedTokenIds.length > 0) this.post({ type: 'accept', tokens: [[request.requestId, [...request.acceptedTokenIds]]] });
    }
    // Tokens not yet sent are in acceptedTokenIds already: the replay covers them.
    this.pendingAccepts = [];
    for (const [fillId, fill] of this.pendingFills) this.post({ type: 'fill', fillId, requestIds: fill.requestIds });
  }

  /** The worker cannot serve: every constrained request fails, and new ones are refused. */
  private fail(error: PagodaEngineError): void {
    this.unavailable = error;
    for (const fill of this.pendingFills.values()) fill.reject(error);
    this.pendingFills.clear();
    for (const requestId of [...this.requests.keys()]) {
      this.requests.delete(requestId);
      this.options.onError(requestId, error);
    }
  }
}

function restoreError(error: SerializedError, kind: string): PagodaEngineError {
  if (error.code === 'invalid_structured_outputs') return new StructuredOutputError(error.message, { kind });
  return new PagodaEngineError(error.code ?? 'structured_outputs_failed', error.message);
}

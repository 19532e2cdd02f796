import type { NormalizedSamplingParams, SampledTokenLogprobs } from '@pagoda/sampling';
import { type FinishReason, RequestStatus } from '@pagoda/scheduler';
import { OutputText } from '../frontend/output-text';
import type { TextTokenizer } from '../frontend/text-tokenizer';
import type { EngineCoreOutput, EngineCoreRequest } from './engine-core';
import type { CompletionOutput, RequestMetrics, RequestOutput } from './request-output';

/** A request as the frontend takes it: tokenized, validated, with its n and its id. */
export interface FrontendRequest {
  readonly requestId: string;
  readonly prompt: string | undefined;
  readonly promptTokenIds: readonly number[];
  readonly samplingParams: NormalizedSamplingParams;
  readonly eosTokenIds: readonly number[];
  readonly priority?: number;
  readonly cacheSalt?: string;
}

/** What the caller must tell the engine core after processing a step's outputs. */
export interface ProcessedOutputs {
  /** Per request, the delta since the last call (only requests that changed). */
  readonly deltas: RequestOutput[];
  /** Child requests to add to the core now (the other samples of an n > 1 request, once its prompt is cached). */
  readonly requestsToAdd: EngineCoreRequest[];
  /** Core requests that a stop string ended: finish them as stopped. */
  readonly requestsToStop: string[];
}

interface ChildState {
  readonly parent: ParentState;
  readonly index: number;
  readonly coreRequestId: string;
  readonly text: OutputText;
  readonly tokenIds: number[];
  readonly logprobs: SampledTokenLogprobs[] | undefined;
  finishReason: FinishReason | undefined;
  stopReason: string | number | undefined;
  lastTokenTime: number | undefined;
}

interface ParentState {
  readonly request: FrontendRequest;
  readonly children: ChildState[];
  readonly arrivalTime: number;
  /** Children waiting for the first one's prompt to be computed, so they find it in the prefix cache. */
  pending: EngineCoreRequest[];
  numCachedTokens: number;
  firstTokenTime: number | undefined;
  readonly interTokenLatencies: number[];
  numUnfinished: number;
}

/**
 * The frontend's per-request state: detokenization, stop strings, logprobs, n > 1 fan-out and timings. Engine-core
 * request ids are its own (`0`, `1`, ...), so callers' ids may be anything; each maps back to (request, index).
 *
 * n > 1: the first sample goes to the core at once; the others follow once it has produced its first token, when
 * its prompt's full blocks are in the prefix cache, so they share them instead of computing the prompt again. A
 * seeded request's sample `i` uses seed + i, so the samples differ and each is reproducible.
 */
export class OutputProcessor {
  private readonly parents = new Map<string, ParentState>();
  private readonly children = new Map<string, ChildState>();
  private nextCoreId = 0;
  /** Tokens in and out, cumulative: prompts count once their first token is out (their prefill is done). */
  readonly totals = { promptTokens: 0, generationTokens: 0, finishedRequests: 0 };

  constructor(
    private readonly tokenizer: TextTokenizer,
    private readonly clock: () => number = () => performance.now() / 1000,
  ) {}

  /** The caller's request id of an unfinished engine-core request. */
  requestIdOf(coreRequestId: string): string | undefined {
    return this.children.get(coreRequestId)?.parent.request.requestId;
  }

  has(requestId: string): boolean {
    return this.parents.has(requestId);
  }

  get numUnfinishedRequests(): number {
    return this.parents.size;
  }

  /** Registers a request; returns the core requests to add now. */
  addRequest(request: FrontendRequest): EngineCoreRequest[] {
    if (this.parents.has(request.requestId)) throw new Error(`request id ${request.requestId} is already in use`);
    const parent: ParentState = {
      request,
      children: [],
      arrivalTime: this.clock(),
      pending: [],
      numCachedTokens: 0,
      firstTokenTime: undefined,
      interTokenLatencies: [],
      numUnfinished: request.samplingParams.n,
    };
    this.parents.set(request.requestId, parent);
    const coreRequests: EngineCoreRequest[] = [];
    for (let index = 0; index < request.samplingParams.n; index += 1) {
      const coreRequestId = String(this.nextCoreId++);
      const params = request.samplingParams;
      const child: ChildState = {
        parent,
        index,
        coreRequestId,
        text: new OutputText(this.tokenizer, request.promptTokenIds, {
          stop: params.stop,
          includeStopStrInOutput: params.includeStopStrInOutput,
          skipSpecialTokens: params.skipSpecialTokens,
        }),
        tokenIds: [],
        logprobs: params.logprobs === null ? undefined : [],
        finishReason: undefined,
        stopReason: undefined,
        lastTokenTime: undefined,
      };
      parent.children.push(child);
      this.children.set(coreRequestId, child);
      coreRequests.push({
        requestId: coreRequestId,
        promptTokenIds: request.promptTokenIds,
        // The other samples find the first one's prompt in the prefix cache and need not score it again.
        samplingParams: index === 0 ? params : { ...params, ...(params.seed === null ? {} : { seed: params.seed + index }), promptLogprobs: null },
        eosTokenIds: request.eosTokenIds,
        arrivalTime: parent.arrivalTime,
        ...(request.priority === undefined ? {} : { priority: request.priority }),
        ...(request.cacheSalt === undefined ? {} : { cacheSalt: request.cacheSalt }),
      });
    }
    parent.pending = coreRequests.slice(1);
    return coreRequests.slice(0, 1);
  }

  /** Applies a step's outputs. */
  processOutputs(outputs: readonly EngineCoreOutput[]): ProcessedOutputs {
    const now = this.clock();
    const deltasByParent = new Map<ParentState, CompletionOutput[]>();
    const promptLogprobsByParent = new Map<ParentState, ReadonlyArray<SampledTokenLogprobs | null>>();
    const embeddingByParent = new Map<ParentState, readonly number[]>();
    const requestsToAdd: EngineCoreRequest[] = [];
    const requestsToStop: string[] = [];

    for (const output of outputs) {
      const child = this.children.get(output.requestId);
      if (child === undefined || child.finishReason !== undefined) continue;
      const parent = child.parent;
      if (child.index === 0) {
        // A prompt counts once its prefill is done: at the first token, or at the end of one that generates none.
        if (parent.firstTokenTime === undefined && (output.newTokenIds.length > 0 || output.finishReason !== undefined)) {
          this.totals.promptTokens += parent.request.promptTokenIds.length;
        }
        parent.numCachedTokens = output.numCachedTokens;
        if (output.promptLogprobs !== undefined) promptLogprobsByParent.set(parent, [null, ...output.promptLogprobs]);
        if (output.embedding !== undefined) embeddingByParent.set(parent, output.embedding);
      }
      this.totals.generationTokens += output.newTokenIds.length;
      if (parent.pending.length > 0) {
        requestsToAdd.push(...parent.pending);
        parent.pending = [];
      }
      let text = '';
      const newTokenIds: number[] = [];
      const newLogprobs: SampledTokenLogprobs[] = [];
      for (let index = 0; index < output.newTokenIds.length; index += 1) {
        const tokenId = output.newTokenIds[index]!;
        newTokenIds.push(tokenId);
        child.tokenIds.push(tokenId);
        const logprobs = output.newLogprobs?.[index];
        if (logprobs !== undefined && child.logprobs !== undefined) {
          child.logprobs.push(logprobs);
          newLogprobs.push(logprobs);
        }
        if (child.lastTokenTime === undefined) parent.firstTokenTime ??= now;
        else parent.interTokenLatencies.push(now - child.lastTokenTime);
        child.lastTokenTime = now;
        const delta = child.text.push(tokenId);
        text += delta.delta;
        if (delta.stoppedAt !== undefined) {
          child.finishReason = 'stop';
          child.stopReason = delta.stoppedAt;
          if (output.finishReason === undefined) requestsToStop.push(child.coreRequestId);
          break;
        }
      }
      if (child.finishReason === undefined && output.finishReason !== undefined) {
        child.finishReason = output.finishReason;
        child.stopReason = output.stopReason;
        text += child.text.flush();
      }
      if (child.finishReason !== undefined) this.finishChild(child);
      const completions = deltasByParent.get(parent) ?? [];
      completions.push({
        index: child.index,
        text,
        tokenIds: newTokenIds,
        logprobs: child.logprobs === undefined ? undefined : newLogprobs,
        finishReason: child.finishReason,
        stopReason: child.stopReason,
      });
      deltasByParent.set(parent, completions);
    }

    const deltas: RequestOutput[] = [];
    for (const [parent, completions] of deltasByParent) {
      const output = this.makeOutput(parent, completions, now);
      const promptLogprobs = promptLogprobsByParent.get(parent);
      const embedding = embeddingByParent.get(parent);
      deltas.push({
        ...output,
        ...(promptLogprobs === undefined ? {} : { promptLogprobs }),
        ...(embedding === undefined ? {} : { embedding }),
      });
    }
    return { deltas, requestsToAdd, requestsToStop };
  }

  /**
   * Aborts a request: returns the core request ids to abort (those the core has) and the final delta. Unknown ids
   * give `undefined`.
   */
  abortRequest(requestId: string): { coreRequestIds: string[]; output: RequestOutput } | undefined {
    const parent = this.parents.get(requestId);
    if (parent === undefined) return undefined;
    const pendingIds = new Set(parent.pending.map((request) => request.requestId));
    parent.pending = [];
    const coreRequestIds: string[] = [];
    const completions: CompletionOutput[] = [];
    for (const child of parent.children) {
      if (child.finishReason !== undefined) continue;
      if (!pendingIds.has(child.coreRequestId)) coreRequestIds.push(child.coreRequestId);
      child.finishReason = 'abort';
      completions.push({ index: child.index, text: child.text.flush(), tokenIds: [], logprobs: child.logprobs && [], finishReason: 'abort', stopReason: undefined });
      this.finishChild(child);
    }
    return { coreRequestIds, output: this.makeOutput(parent, completions, this.clock()) };
  }

  /** Every request's core ids, for shutting down. */
  allCoreRequestIds(): string[] {
    return [...this.children.keys()];
  }

  private finishChild(child: ChildState): void {
    this.children.delete(child.coreRequestId);
    child.parent.numUnfinished -= 1;
    if (child.parent.numUnfinished === 0) {
      this.parents.delete(child.parent.request.requestId);
      this.totals.finishedRequests += 1;
    }
  }

  private makeOutput(parent: ParentState, completions: CompletionOutput[], now: number): RequestOutput {
    const finished = parent.numUnfinished === 0;
    const metrics: RequestMetrics | undefined = finished
      ? {
          arrivalTime: parent.arrivalTime,
          firstTokenTime: parent.firstTokenTime,
          finishedTime: now,
          timeToFirstToken: parent.firstTokenTime === undefined ? undefined : parent.firstTokenTime - parent.arrivalTime,
          interTokenLatencies: parent.interTokenLatencies,
          e2eLatency: now - parent.arrivalTime,
        }
      : undefined;
    return {
      requestId: parent.request.requestId,
      prompt: parent.request.prompt,
      promptTokenIds: parent.request.promptTokenIds,
      outputs: completions.sort((left, right) => left.index - right.index),
      finished,
      numCachedTokens: parent.numCachedTokens,
      metrics,
    };
  }
}

/** The core status a stop string maps to. */
export const stopStringStatus = RequestStatus.FinishedStopped;

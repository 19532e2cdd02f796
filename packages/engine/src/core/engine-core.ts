import type { KvCachePlan } from '@pagoda/kv-cache';
import { type NormalizedSamplingParams, type SampledTokenLogprobs, type Sampler, type SamplingRow, tokenLogprobs } from '@pagoda/sampling';
import { type FinishReason, RequestStatus, type Scheduler, type SchedulerOutput, type SchedulerStats } from '@pagoda/scheduler';
import { PagodaEngineError } from '../errors';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import {
  type PendingBitmasks,
  StructuredOutputManager,
  type StructuredOutputManagerOptions,
} from '../structured-output/structured-output-manager';
import type { PoolerConfig } from '../model/pooler-config';
import type { StartupMemory } from './process-memory';
import { PromptPooler } from './prompt-pooler';

/** What the engine core needs from a model runner: one batched step, and a way to let go of it. */
export interface ModelExecutor {
  execute(requests: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput>;
  release(): Promise<void>;
}

/** A request as the engine core takes it: already tokenized, its parameters validated. */
export interface EngineCoreRequest {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly samplingParams: NormalizedSamplingParams;
  /** The model's end-of-sequence ids (config.json and generation_config.json together). */
  readonly eosTokenIds: readonly number[];
  readonly priority?: number;
  readonly cacheSalt?: string;
  /** Seconds on the core's clock; defaults to when the core receives it. */
  readonly arrivalTime?: number;
}

/** One request's news from a step. Plain data: it crosses from the core's worker to the frontend. */
export interface EngineCoreOutput {
  readonly requestId: string;
  readonly newTokenIds: readonly number[];
  /** Per new token, when the request asked for logprobs. */
  readonly newLogprobs: readonly SampledTokenLogprobs[] | undefined;
  readonly finishReason: FinishReason | undefined;
  /** The stop token id that ended it, if one did. */
  readonly stopReason: number | undefined;
  readonly numCachedTokens: number;
  /**
   * With `promptLogprobs`, once (with the request's first token, or its end when it generates none): the logprobs
   * of its prompt tokens from the second on, each given the tokens before it.
   */
  readonly promptLogprobs?: readonly SampledTokenLogprobs[];
  /** A pooling model's vector for the prompt, with the request's end. */
  readonly embedding?: readonly number[];
}

/** Prompt tokens computed per step for a request whose every position's logits come back (`promptLogprobs`). */
export const promptLogitsTokensPerStep = 64;

interface RequestPayload {
  readonly samplingParams: NormalizedSamplingParams;
}

/** A step submitted to the executor whose logits have not been sampled yet. */
interface InFlightBatch {
  readonly schedulerOutput: SchedulerOutput;
  readonly sampledRequestIds: readonly string[];
  /** Taken when the batch was scheduled: an abort while it runs must not pull a row from under the sampler. */
  readonly rows: readonly SamplingRow[];
  readonly modelOutput: Promise<ModelRunnerOutput>;
  /** Requests preempted after this batch was scheduled: their tokens from it are void, even if they run again. */
  readonly voided: Set<string>;
  /** The grammar worker's bitmasks for the batch's constrained rows, computed while the model runs. */
  readonly bitmasks: PendingBitmasks | undefined;
  /** Requests that get every new position's logits (prompt logprobs): their index among the runner requests and first position. */
  readonly promptRows: ReadonlyArray<{ readonly requestId: string; readonly runIndex: number; readonly firstPosition: number }>;
  /** Per runner request, whether its last logits row is sampled. */
  readonly runSampled: readonly boolean[];
  /** A pooling model's runner requests whose hidden-state rows add to their request's pool. */
  readonly pooledRuns: ReadonlyArray<{ readonly requestId: string; readonly runIndex: number }>;
}

/** Options of {@link EngineCore}. */
export interface EngineCoreOptions {
  /**
   * Batches submitted to the executor before the oldest one is sampled (default 1). A pipeline of `pp` stages keeps
   * `pp` in flight, so that stage 0 runs batch N + 1 while the last stage runs batch N.
   */
  readonly maxBatchesInFlight?: number;
  /** The KV cache the core's executor was built with (reported by LLM and AsyncLLM). */
  readonly kvCache?: KvCachePlan;
  /** What setting up the executor found (a GPU's memory plan, the KV pool self-check), for the start-up log. */
  readonly startupLog?: readonly string[];
  /**
   * Structured outputs (grammar-constrained decoding): the checkpoint and vocabulary the grammar worker builds its
   * tokenizer info from. Without it, a request with `structuredOutputs` is refused.
   */
  readonly structuredOutputs?: Omit<StructuredOutputManagerOptions, 'onReady' | 'onError'>;
  /** The process's memory around start-up beside what the model needs (see StartupMemory). */
  readonly startupMemory?: StartupMemory;
  /**
   * A pooling model (its executor returns the final norm's hidden states): every request computes its prompt,
   * generates nothing, and ends with its pooled vector (`EngineCoreOutput.embedding`).
   */
  readonly pooler?: PoolerConfig;
}

/** A request the core ended on its own, after accepting it: its grammar did not compile. */
export interface EngineCoreRequestError {
  readonly requestId: string;
  readonly error: PagodaEngineError;
}

/**
 * The engine loop's body, one `step()` at a time: schedule → run the model → sample → update. It owns the
 * scheduler, the model executor and the sampler, and tracks each running request's block table from the
 * scheduler's outputs (full data once, diffs after), as a model runner's input batch does.
 *
 * With `maxBatchesInFlight` > 1 (pipeline parallelism), as vLLM's batch queue: a step schedules and submits a batch
 * without waiting while fewer than that many are in flight, and otherwise samples the oldest. The scheduler counts
 * scheduled tokens as computed at once, so a later batch holds only what does not wait on an earlier one's tokens
 * (further prompt chunks, newly admitted requests). The executor runs batches in order on every rank, so a batch
 * always sees the keys and values of the batches before it.
 *
 * ```text
 * maxBatchesInFlight 2:  step: schedule A → submit A, return []
 *                        step: schedule B → submit B, sample A, update, return A's news
 *                        step: schedule C → submit C, sample B, ...
 * ```
 *
 * Structured outputs: a constrained request waits in the scheduler while the grammar worker compiles its grammar
 * (a step with nothing else to run waits for it without spinning). Each submitted batch asks the worker for its
 * constrained rows' bitmasks before the model runs, so they are computed meanwhile; completing the batch awaits
 * them, hands them to the sampler, and sends the new tokens back. Unconstrained rows take no part in any of it.
 */
export class EngineCore {
  private readonly blockTables = new Map<string, number[]>();
  private readonly samplingRows = new Map<string, SamplingRow>();
  /** Prompt logprobs computed so far, per request still computing its prompt; handed on with its first news. */
  private readonly promptLogprobs = new Map<string, SampledTokenLogprobs[]>();
  private readonly batchQueue: InFlightBatch[] = [];
  private readonly maxBatchesInFlight: number;
  readonly kvCache: KvCachePlan | undefined;
  readonly startupLog: readonly string[];
  /** Absent unless the core was built with `structuredOutputs`. */
  readonly structuredOutput: StructuredOutputManager | undefined;
  /** Per constrained batch: how long completing it waited for the worker's bitmasks after the model's run, in ms. */
  readonly bitmaskWaitMs: number[] = [];
  /**
   * Called when the core ends a request it had accepted (its grammar did not compile). Without a listener, the
   * errors wait for {@link takeRequestErrors}.
   */
  requestErrorListener: ((error: EngineCoreRequestError) => void) | undefined = undefined;
  private readonly requestErrors: EngineCoreRequestError[] = [];
  private wakeIdle: (() => void) | undefined = undefined;
  readonly startupMemory: StartupMemory | undefined;
  /** Absent unless the core serves a pooling model. */
  private readonly pooler: PromptPooler | undefined;

  constructor(
    readonly scheduler: Scheduler,
    readonly executor: ModelExecutor,
    readonly sampler: Sampler,
    options: EngineCoreOptions = {},
  ) {
    this.maxBatchesInFlight = options.maxBatchesInFlight ?? 1;
    this.kvCache = options.kvCache;
    this.startupLog = options.startupLog ?? [];
    this.structuredOutput =
      options.structuredOutputs === undefined
        ? undefined
        : new StructuredOutputManager({
            ...options.structuredOutputs,
            onReady: (requestId) => {
              this.scheduler.markStructuredOutputReady(requestId);
              this.wake();
            },
            onError: (requestId, error) => {
              this.scheduler.finishRequests(requestId, RequestStatus.FinishedAborted);
              this.forget(requestId);
              const failure = { requestId, error };
              if (this.requestErrorListener !== undefined) this.requestErrorListener(failure);
              else this.requestErrors.push(failure);
              this.wake();
            },
          });
    this.startupMemory = options.startupMemory;
    this.pooler = options.pooler === undefined ? undefined : new PromptPooler(options.pooler);
  }

  /**
   * Queues a request; throws the scheduler's `RequestRejectedError` for one that could never run, and for a
   * constraint already known not to compile, its `StructuredOutputError`.
   */
  addRequest(request: EngineCoreRequest): void {
    const params = request.samplingParams;
    const constrained = params.structuredOutputs != null;
    if (constrained && this.structuredOutput === undefined) {
      throw new PagodaEngineError('structured_outputs_unavailable', 'this engine core was built without structured outputs');
    }
    const pooling = this.pooler !== undefined;
    if (pooling && (constrained || params.promptLogprobs !== null)) {
      throw new PagodaEngineError('pooling_model', 'a pooling model generates nothing: structured outputs and prompt logprobs do not apply');
    }
    const added = this.scheduler.addRequest({
      requestId: request.requestId,
      promptTokenIds: request.promptTokenIds,
      // A pooling model's requests end once their prompt is computed.
      maxTokens: pooling ? 0 : params.maxTokens,
      minTokens: params.minTokens,
      eosTokenIds: request.eosTokenIds,
      stopTokenIds: params.stopTokenIds,
      ignoreEos: params.ignoreEos,
      ...(request.priority === undefined ? {} : { priority: request.priority }),
      ...(request.cacheSalt === undefined ? {} : { cacheSalt: request.cacheSalt }),
      ...(request.arrivalTime === undefined ? {} : { arrivalTime: request.arrivalTime }),
      payload: { samplingParams: params } satisfies RequestPayload,
      waitForStructuredOutput: constrained,
      // Prompt logprobs need every position's logits: none come from the prefix cache, and they come in chunks.
      ...(params.promptLogprobs === null ? {} : { skipPrefixCache: true, maxTokensPerStep: promptLogitsTokensPerStep }),
      ...(this.pooler?.needsEveryPosition === true ? { skipPrefixCache: true } : {}),
    });
    this.pooler?.start(request.requestId);
    if (params.promptLogprobs !== null) this.promptLogprobs.set(request.requestId, []);
    // The sampler reads the scheduler's own growing arrays: no copies per step.
    this.samplingRows.set(request.requestId, {
      params,
      history: { promptTokenIds: added.promptTokenIds, outputTokenIds: added.outputTokenIds, eosTokenIds: request.eosTokenIds },
    });
    if (constrained) {
      try {
        this.structuredOutput!.addRequest(request.requestId, params.structuredOutputs!, added.promptTokenIds, request.eosTokenIds);
      } catch (error) {
        this.scheduler.finishRequests(request.requestId, RequestStatus.FinishedAborted);
        this.forget(request.requestId);
        throw error;
      }
    }
    this.wake();
  }

  /** The requests the core ended on its own since the last call (when no listener takes them). */
  takeRequestErrors(): EngineCoreRequestError[] {
    return this.requestErrors.splice(0);
  }

  /** Ends requests between steps: aborts (default), or stops the frontend found (a stop string). */
  finishRequests(requestIds: readonly string[], status: RequestStatus = RequestStatus.FinishedAborted): void {
    this.scheduler.finishRequests(requestIds, status);
    for (const requestId of requestIds) this.forget(requestId);
    this.wake();
  }

  /** True while requests wait or run, or a batch is still in flight. */
  hasUnfinishedRequests(): boolean {
    return this.batchQueue.length > 0 || this.scheduler.hasUnfinishedRequests();
  }

  makeStats(): SchedulerStats {
    return this.scheduler.makeStats();
  }

  /**
   * Runs one step; returns news for every request that got tokens or finished. With several batches in flight, a
   * step that only submitted a batch returns no news.
   */
  async step(): Promise<EngineCoreOutput[]> {
    if (this.batchQueue.length < this.maxBatchesInFlight) {
      const batch = this.submitBatch();
      if (batch !== undefined) {
        this.batchQueue.push(batch);
        if (this.batchQueue.length < this.maxBatchesInFlight) return [];
      }
    }
    const oldest = this.batchQueue.shift();
    if (oldest !== undefined) return this.completeBatch(oldest);
    // Nothing could run but grammars are compiling: wait for one (or for any new request or abort), not spin.
    if (this.scheduler.numWaitingForStructuredOutput > 0) await new Promise<void>((resolve) => (this.wakeIdle = resolve));
    return [];
  }

  /** Schedules a batch and hands it to the executor without waiting; undefined when nothing is scheduled. */
  private submitBatch(): InFlightBatch | undefined {
    const scheduler = this.scheduler;
    const output = scheduler.schedule();
    // Finished requests were forgotten when they finished; preempted ones come back with a fresh block table.
    for (const requestId of output.preemptedRequestIds) {
      this.blockTables.delete(requestId);
      for (const batch of this.batchQueue) batch.voided.add(requestId);
      // Its prompt is computed again from the start, and scored again with it.
      if (this.promptLogprobs.has(requestId)) this.promptLogprobs.set(requestId, []);
      if (this.pooler?.has(requestId) === true) this.pooler.start(requestId);
    }
    if (output.totalNumScheduledTokens === 0) return undefined;

    const runnerRequests: ModelRunnerRequest[] = [];
    const sampledRequestIds: string[] = [];
    const promptRows: Array<{ requestId: string; runIndex: number; firstPosition: number }> = [];
    const runSampled: boolean[] = [];
    const pooledRuns: Array<{ requestId: string; runIndex: number }> = [];
    const addRun = (requestId: string, tokenIds: readonly number[], numComputedTokens: number, blockTable: number[]) => {
      const request = scheduler.getRequest(requestId)!;
      // A request that generates nothing (max_tokens 0) only computes its prompt.
      const sampling = numComputedTokens + tokenIds.length === request.numTokens && request.maxTokens > 0;
      const scoring = this.promptLogprobs.has(requestId) && numComputedTokens < request.numPromptTokens;
      if (sampling) sampledRequestIds.push(requestId);
      if (scoring) promptRows.push({ requestId, runIndex: runnerRequests.length, firstPosition: numComputedTokens });
      runSampled.push(sampling);
      const pooledRows = this.pooler?.rowsFor(numComputedTokens, tokenIds.length, request.numPromptTokens);
      if (pooledRows !== undefined && pooledRows !== 'none') pooledRuns.push({ requestId, runIndex: runnerRequests.length });
      runnerRequests.push({ tokenIds, numComputedTokens, blockTable, logits: pooledRows ?? (scoring ? 'all' : sampling ? 'last' : 'none') });
    };
    for (const data of output.scheduledNewRequests) {
      const blockTable = [...data.blockIds];
      this.blockTables.set(data.requestId, blockTable);
      const count = output.numScheduledTokens[data.requestId]!;
      addRun(data.requestId, data.tokenIds.slice(data.numComputedTokens, data.numComputedTokens + count), data.numComputedTokens, blockTable);
    }
    const cached = output.scheduledCachedRequests;
    for (let index = 0; index < cached.requestIds.length; index += 1) {
      const requestId = cached.requestIds[index]!;
      const blockTable = this.blockTables.get(requestId)!;
      for (const blockId of cached.newBlockIds[index]!) blockTable.push(blockId);
      addRun(requestId, cached.newTokenIds[index]!, cached.numComputedTokens[index]!, blockTable);
    }

    // Asked before the model runs, so the grammar worker computes the masks meanwhile.
    const bitmasks = this.structuredOutput?.requestBitmasks(sampledRequestIds);
    const modelOutput = this.executor.execute(runnerRequests);
    // Awaited when the batch completes; until then a failure must not count as unhandled.
    modelOutput.catch(() => undefined);
    return {
      schedulerOutput: output,
      sampledRequestIds,
      rows: sampledRequestIds.map((requestId) => this.samplingRows.get(requestId)!),
      modelOutput,
      voided: new Set(),
      bitmasks,
      promptRows,
      runSampled,
      pooledRuns,
    };
  }

  /**
   * The sampled rows of a step's logits, in sampling order: the logits themselves, unless some request got every
   * position's logits (prompt logprobs), when its last row (the one sampled, if any) is taken out of them.
   */
  private samplingLogits(batch: InFlightBatch, modelOutput: ModelRunnerOutput): Float32Array {
    if (batch.promptRows.length === 0) return modelOutput.logits;
    const { vocabSize, logitsRowStart, logits } = modelOutput;
    const rows = new Float32Array(batch.sampledRequestIds.length * vocabSize);
    let next = 0;
    batch.runSampled.forEach((sampled, runIndex) => {
      if (!sampled) return;
      const last = logitsRowStart[runIndex + 1]! - 1;
      rows.set(logits.subarray(last * vocabSize, (last + 1) * vocabSize), next * vocabSize);
      next += 1;
    });
    return rows;
  }

  /** Scores each prompt position a step computed: the logprob of the prompt token after it (prompt logprobs). */
  private collectPromptLogprobs(batch: InFlightBatch, modelOutput: ModelRunnerOutput): void {
    const { vocabSize, logitsRowStart, logits } = modelOutput;
    for (const { requestId, runIndex, firstPosition } of batch.promptRows) {
      const scored = this.promptLogprobs.get(requestId);
      const request = this.scheduler.getRequest(requestId);
      if (scored === undefined || request === undefined || batch.voided.has(requestId)) continue;
      const topCount = this.samplingRows.get(requestId)!.params.promptLogprobs!;
      const start = logitsRowStart[runIndex]!;
      for (let row = start; row < logitsRowStart[runIndex + 1]!; row += 1) {
        const next = firstPosition + (row - start) + 1;
        if (next >= request.numPromptTokens) break; // the last prompt position predicts the first output token
        scored.push(tokenLogprobs(logits.subarray(row * vocabSize, (row + 1) * vocabSize), request.promptTokenIds[next]!, topCount));
      }
    }
  }

  /** Waits for a batch's logits, samples them and applies the tokens. */
  private async completeBatch(batch: InFlightBatch): Promise<EngineCoreOutput[]> {
    const modelOutput = await batch.modelOutput;
    let rows = batch.rows;
    if (batch.bitmasks !== undefined) {
      const { rowOf, words } = batch.bitmasks;
      const waitStarted = performance.now();
      const bitmask = await batch.bitmasks.bitmask;
      this.bitmaskWaitMs.push(performance.now() - waitStarted);
      if (this.bitmaskWaitMs.length > 10_000) this.bitmaskWaitMs.splice(0, 5_000);
      rows = rows.map((row, index) => {
        const maskRow = rowOf[index]!;
        return maskRow < 0 ? row : { ...row, allowedTokenBitmask: bitmask.subarray(maskRow * words, (maskRow + 1) * words) };
      });
    }
    this.collectPromptLogprobs(batch, modelOutput);
    const { logits, vocabSize, logitsRowStart } = modelOutput;
    for (const { requestId, runIndex } of batch.pooledRuns) {
      if (!batch.voided.has(requestId)) this.pooler!.add(requestId, logits, vocabSize, logitsRowStart[runIndex]!, logitsRowStart[runIndex + 1]!);
    }
    const sampled = this.sampler.sample({ logits: this.samplingLogits(batch, modelOutput), rows });
    const sampledTokenIds: Record<string, number[]> = {};
    const logprobsByRequest = new Map<string, SampledTokenLogprobs>();
    batch.sampledRequestIds.forEach((requestId, row) => {
      if (batch.voided.has(requestId)) return;
      sampledTokenIds[requestId] = [sampled.tokenIds[row]!];
      const logprobs = sampled.logprobs[row];
      if (logprobs) logprobsByRequest.set(requestId, logprobs);
    });

    const updates = this.scheduler.updateFromOutput(batch.schedulerOutput, { sampledTokenIds });
    return updates.map((update) => {
      const logprobs = logprobsByRequest.get(update.requestId);
      // The matcher follows exactly the tokens the scheduler appended: voided ones never reach it.
      this.structuredOutput?.acceptTokens(update.requestId, update.newTokenIds);
      // The prompt's logprobs travel once, with the request's first news (its first token, or its end).
      const promptLogprobs = this.promptLogprobs.get(update.requestId);
      this.promptLogprobs.delete(update.requestId);
      const embedding = update.finishReason === undefined ? undefined : this.pooler?.finish(update.requestId);
      if (update.finishReason !== undefined) this.forget(update.requestId);
      return {
        requestId: update.requestId,
        newTokenIds: update.newTokenIds,
        newLogprobs: logprobs === undefined ? undefined : [logprobs],
        finishReason: update.finishReason,
        stopReason: update.stopReason,
        numCachedTokens: update.numCachedTokens,
        ...(promptLogprobs === undefined ? {} : { promptLogprobs }),
        ...(embedding === undefined ? {} : { embedding }),
      };
    });
  }

  /** Releases the model executor. */
  async shutdown(): Promise<void> {
    await Promise.allSettled(this.batchQueue.map((batch) => batch.modelOutput));
    await this.structuredOutput?.shutdown();
    await this.executor.release();
  }

  private forget(requestId: string): void {
    this.blockTables.delete(requestId);
    this.samplingRows.delete(requestId);
    this.promptLogprobs.delete(requestId);
    this.pooler?.forget(requestId);
    this.structuredOutput?.removeRequests([requestId]);
  }

  /** Ends a step's wait for a compiling grammar early: the caller has news for the loop (a shutdown). */
  interruptIdleWait(): void {
    this.wake();
  }

  private wake(): void {
    const wakeIdle = this.wakeIdle;
    this.wakeIdle = undefined;
    wakeIdle?.();
  }
}

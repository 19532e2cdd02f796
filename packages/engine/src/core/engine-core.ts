import type { KvCachePlan } from '@pagoda/kv-cache';
import type { NormalizedSamplingParams, SampledTokenLogprobs, Sampler, SamplingRow } from '@pagoda/sampling';
import { type FinishReason, RequestStatus, type Scheduler, type SchedulerOutput, type SchedulerStats } from '@pagoda/scheduler';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import type { StartupMemory } from './process-memory';

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
}

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
  /** The process's memory around start-up beside what the model needs (see StartupMemory). */
  readonly startupMemory?: StartupMemory;
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
 */
export class EngineCore {
  private readonly blockTables = new Map<string, number[]>();
  private readonly samplingRows = new Map<string, SamplingRow>();
  private readonly batchQueue: InFlightBatch[] = [];
  private readonly maxBatchesInFlight: number;
  readonly kvCache: KvCachePlan | undefined;
  readonly startupLog: readonly string[];
  readonly startupMemory: StartupMemory | undefined;

  constructor(
    readonly scheduler: Scheduler,
    readonly executor: ModelExecutor,
    readonly sampler: Sampler,
    options: EngineCoreOptions = {},
  ) {
    this.maxBatchesInFlight = options.maxBatchesInFlight ?? 1;
    this.kvCache = options.kvCache;
    this.startupLog = options.startupLog ?? [];
    this.startupMemory = options.startupMemory;
  }

  /** Queues a request; throws the scheduler's `RequestRejectedError` for one that could never run. */
  addRequest(request: EngineCoreRequest): void {
    const params = request.samplingParams;
    const added = this.scheduler.addRequest({
      requestId: request.requestId,
      promptTokenIds: request.promptTokenIds,
      maxTokens: params.maxTokens,
      minTokens: params.minTokens,
      eosTokenIds: request.eosTokenIds,
      stopTokenIds: params.stopTokenIds,
      ignoreEos: params.ignoreEos,
      ...(request.priority === undefined ? {} : { priority: request.priority }),
      ...(request.cacheSalt === undefined ? {} : { cacheSalt: request.cacheSalt }),
      ...(request.arrivalTime === undefined ? {} : { arrivalTime: request.arrivalTime }),
      payload: { samplingParams: params } satisfies RequestPayload,
    });
    // The sampler reads the scheduler's own growing arrays: no copies per step.
    this.samplingRows.set(request.requestId, {
      params,
      history: { promptTokenIds: added.promptTokenIds, outputTokenIds: added.outputTokenIds, eosTokenIds: request.eosTokenIds },
    });
  }

  /** Ends requests between steps: aborts (default), or stops the frontend found (a stop string). */
  finishRequests(requestIds: readonly string[], status: RequestStatus = RequestStatus.FinishedAborted): void {
    this.scheduler.finishRequests(requestIds, status);
    for (const requestId of requestIds) this.forget(requestId);
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
    return oldest === undefined ? [] : this.completeBatch(oldest);
  }

  /** Schedules a batch and hands it to the executor without waiting; undefined when nothing is scheduled. */
  private submitBatch(): InFlightBatch | undefined {
    const scheduler = this.scheduler;
    const output = scheduler.schedule();
    // Finished requests were forgotten when they finished; preempted ones come back with a fresh block table.
    for (const requestId of output.preemptedRequestIds) {
      this.blockTables.delete(requestId);
      for (const batch of this.batchQueue) batch.voided.add(requestId);
    }
    if (output.totalNumScheduledTokens === 0) return undefined;

    const runnerRequests: ModelRunnerRequest[] = [];
    const sampledRequestIds: string[] = [];
    const addRun = (requestId: string, tokenIds: readonly number[], numComputedTokens: number, blockTable: number[]) => {
      const request = scheduler.getRequest(requestId)!;
      const sampling = numComputedTokens + tokenIds.length === request.numTokens;
      if (sampling) sampledRequestIds.push(requestId);
      runnerRequests.push({ tokenIds, numComputedTokens, blockTable, logits: sampling ? 'last' : 'none' });
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

    const modelOutput = this.executor.execute(runnerRequests);
    // Awaited when the batch completes; until then a failure must not count as unhandled.
    modelOutput.catch(() => undefined);
    return {
      schedulerOutput: output,
      sampledRequestIds,
      rows: sampledRequestIds.map((requestId) => this.samplingRows.get(requestId)!),
      modelOutput,
      voided: new Set(),
    };
  }

  /** Waits for a batch's logits, samples them and applies the tokens. */
  private async completeBatch(batch: InFlightBatch): Promise<EngineCoreOutput[]> {
    const modelOutput = await batch.modelOutput;
    const sampled = this.sampler.sample({ logits: modelOutput.logits, rows: batch.rows });
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
      if (update.finishReason !== undefined) this.forget(update.requestId);
      return {
        requestId: update.requestId,
        newTokenIds: update.newTokenIds,
        newLogprobs: logprobs === undefined ? undefined : [logprobs],
        finishReason: update.finishReason,
        stopReason: update.stopReason,
        numCachedTokens: update.numCachedTokens,
      };
    });
  }

  /** Releases the model executor. */
  async shutdown(): Promise<void> {
    await Promise.allSettled(this.batchQueue.map((batch) => batch.modelOutput));
    await this.executor.release();
  }

  private forget(requestId: string): void {
    this.blockTables.delete(requestId);
    this.samplingRows.delete(requestId);
  }
}

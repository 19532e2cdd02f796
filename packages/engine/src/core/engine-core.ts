import type { NormalizedSamplingParams, SampledTokenLogprobs, Sampler, SamplingRow } from '@pagoda/sampling';
import { type FinishReason, RequestStatus, type Scheduler, type SchedulerStats } from '@pagoda/scheduler';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-runner';

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

/**
 * The engine loop's body, one `step()` at a time: schedule → run the model → sample → update. It owns the
 * scheduler, the model executor and the sampler, and tracks each running request's block table from the
 * scheduler's outputs (full data once, diffs after), as a model runner's input batch does.
 */
export class EngineCore {
  private readonly blockTables = new Map<string, number[]>();
  private readonly samplingRows = new Map<string, SamplingRow>();

  constructor(
    readonly scheduler: Scheduler,
    readonly executor: ModelExecutor,
    readonly sampler: Sampler,
  ) {}

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

  hasUnfinishedRequests(): boolean {
    return this.scheduler.hasUnfinishedRequests();
  }

  makeStats(): SchedulerStats {
    return this.scheduler.makeStats();
  }

  /** Runs one step; returns news for every request that got tokens or finished. */
  async step(): Promise<EngineCoreOutput[]> {
    const scheduler = this.scheduler;
    const output = scheduler.schedule();
    // Finished requests were forgotten when they finished; preempted ones come back with a fresh block table.
    for (const requestId of output.preemptedRequestIds) this.blockTables.delete(requestId);
    if (output.totalNumScheduledTokens === 0) return [];

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

    const modelOutput = await this.executor.execute(runnerRequests);
    const rows = sampledRequestIds.map((requestId) => this.samplingRows.get(requestId)!);
    const sampled = this.sampler.sample({ logits: modelOutput.logits, rows });
    const sampledTokenIds: Record<string, number[]> = {};
    const logprobsByRequest = new Map<string, SampledTokenLogprobs>();
    sampledRequestIds.forEach((requestId, row) => {
      sampledTokenIds[requestId] = [sampled.tokenIds[row]!];
      const logprobs = sampled.logprobs[row];
      if (logprobs) logprobsByRequest.set(requestId, logprobs);
    });

    const updates = scheduler.updateFromOutput(output, { sampledTokenIds });
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
    await this.executor.release();
  }

  private forget(requestId: string): void {
    this.blockTables.delete(requestId);
    this.samplingRows.delete(requestId);
  }
}

import type { KVCacheManager } from '@pagoda/kv-cache';
import { checkContextLength, RequestRejectedError, SchedulerError } from './errors';
import { Request, type RequestInit } from './request';
import { comparePriority, FcfsQueue, PriorityQueue, type RequestQueue } from './request-queue';
import { finishReasonOf, isFinished, RequestStatus } from './request-status';
import type { ModelRunnerOutput, NewRequestData, RequestUpdate, SchedulerOutput } from './scheduler-output';

export interface SchedulerConfig {
  /** Most requests running at once (vLLM's max_num_seqs). */
  maxNumSeqs: number;
  /** Most tokens computed in one step, over all requests (max_num_batched_tokens). */
  maxNumBatchedTokens: number;
  /** The longest sequence, prompt plus output (max_model_len). */
  maxModelLen: number;
  /** Caps one request's share of a step's tokens; 0 (default) means no cap beyond the budget. */
  longPrefillTokenThreshold?: number;
  /** `fcfs` (default): preempt the latest arrival; `priority`: the lowest priority, then the latest arrival. */
  policy?: 'fcfs' | 'priority';
  /** With chunked prefill off, a prompt that doesn't fit in the step's remaining budget waits for a later step. */
  enableChunkedPrefill?: boolean;
  /**
   * Pipeline parallelism keeps this many batches in flight: each step schedules at most ceil(running / n) of the
   * running requests, so consecutive batches hold different requests and every stage has work (default 1).
   */
  numMicroBatches?: number;
}

export interface SchedulerStats {
  numRunningRequests: number;
  numWaitingRequests: number;
  /** Fraction of KV blocks in use, in [0, 1]. */
  kvCacheUsage: number;
  numPreemptionsTotal: number;
  /** In tokens, cumulative (prefix_cache_queries / prefix_cache_hits). */
  prefixCacheQueries: number;
  prefixCacheHits: number;
  numSteps: number;
  numScheduledTokensLastStep: number;
  numScheduledTokensTotal: number;
}

/** Seconds, monotonic. Injected so tests are deterministic; the scheduler starts no timers. */
export type Clock = () => number;

const noBlockIds: readonly number[] = Object.freeze([]);

const defaultClock: Clock = () => performance.now() / 1000;

/**
 * vLLM v1's scheduler. There is no prefill or decode phase: each step gives requests new tokens, each getting
 * `numTokens - numComputedTokens` (capped by the budgets), so one rule covers chunked prefill, decode, prefix
 * caching and resumption after preemption.
 *
 * A step: running requests first, in order; when `allocateSlots` says their blocks don't fit, the policy's victim
 * is preempted by recompute (blocks freed, back to the waiting queue, generated tokens kept) until it does. Then,
 * if nothing was preempted, waiting requests are admitted in queue order while the token budget, the sequence
 * budget and the KV cache allow; a waiting request that doesn't fit stops admission (no overtaking under FCFS).
 *
 * A request added with `waitForStructuredOutput` sits apart until `markStructuredOutputReady`: the others are
 * scheduled meanwhile, and it then joins the waiting queue (at the back under FCFS; by priority and arrival under
 * the priority policy).
 */
export class Scheduler {
  readonly config: Required<SchedulerConfig>;
  private readonly requests = new Map<string, Request>();
  private readonly waiting: RequestQueue;
  /** Requests whose grammar is compiling: out of the waiting queue, so admission never looks at them. */
  private readonly waitingForStructuredOutput = new Map<string, Request>();
  private running: Request[] = [];
  private finishedRequestIds: string[] = [];
  /** The last step's output and its requests, so `updateFromOutput` need not look each one up by id. */
  private lastOutput: SchedulerOutput | undefined = undefined;
  private lastScheduled: Request[] = [];
  private sequence = 0;
  private numSteps = 0;
  private numPreemptionsTotal = 0;
  private numScheduledTokensLastStep = 0;
  private numScheduledTokensTotal = 0;

  constructor(
    config: SchedulerConfig,
    readonly kvCacheManager: KVCacheManager,
    private readonly clock: Clock = defaultClock,
  ) {
    for (const name of ['maxNumSeqs', 'maxNumBatchedTokens', 'maxModelLen'] as const) {
      if (!Number.isInteger(config[name]) || config[name] < 1) {
        throw new SchedulerError('invalid_config', `${snakeCase(name)} must be a positive integer, got ${config[name]}`);
      }
    }
    const threshold = config.longPrefillTokenThreshold ?? 0;
    if (!Number.isInteger(threshold) || threshold < 0) {
      throw new SchedulerError('invalid_config', `long_prefill_token_threshold must be a non-negative integer, got ${threshold}`);
    }
    const enableChunkedPrefill = config.enableChunkedPrefill ?? true;
    const numMicroBatches = config.numMicroBatches ?? 1;
    if (!Number.isInteger(numMicroBatches) || numMicroBatches < 1) {
      throw new SchedulerError('invalid_config', `the number of micro-batches must be a positive integer, got ${numMicroBatches}`);
    }
    if (!enableChunkedPrefill && config.maxNumBatchedTokens < config.maxModelLen) {
      throw new SchedulerError(
        'invalid_config',
        `with chunked prefill off, max_num_batched_tokens (${config.maxNumBatchedTokens}) must be at least max_model_len (${config.maxModelLen}), or a long prompt could never be scheduled`,
      );
    }
    this.config = {
      maxNumSeqs: config.maxNumSeqs,
      maxNumBatchedTokens: config.maxNumBatchedTokens,
      maxModelLen: config.maxModelLen,
      longPrefillTokenThreshold: threshold,
      policy: config.policy ?? 'fcfs',
      enableChunkedPrefill,
      numMicroBatches,
    };
    this.waiting = this.config.policy === 'priority' ? new PriorityQueue() : new FcfsQueue();
  }

  /** Queues a request, or refuses one that could never run with a `RequestRejectedError`. */
  addRequest(init: RequestInit): Request {
    const { maxModelLen } = this.config;
    if (this.requests.has(init.requestId)) {
      throw new RequestRejectedError('duplicate_request_id', `request id ${init.requestId} is already in use`, 'request_id');
    }
    const numPromptTokens = init.promptTokenIds.length;
    if (numPromptTokens === 0) {
      throw new RequestRejectedError('invalid_request', 'the prompt must contain at least one token', 'prompt');
    }
    if (!Number.isInteger(init.maxTokens) || init.maxTokens < 0) {
      throw new RequestRejectedError('invalid_request', `max_tokens must be at least 0, got ${init.maxTokens}`, 'max_tokens');
    }
    if (init.maxTokensPerStep !== undefined && (!Number.isInteger(init.maxTokensPerStep) || init.maxTokensPerStep < 1)) {
      throw new RequestRejectedError('invalid_request', `maxTokensPerStep must be a positive integer, got ${init.maxTokensPerStep}`, 'max_tokens');
    }
    checkContextLength(maxModelLen, numPromptTokens, init.maxTokens);
    const numTokensAtMost = numPromptTokens + init.maxTokens;
    const { blockSize, blockPool } = this.kvCacheManager;
    const blocksNeeded = Math.ceil(numTokensAtMost / blockSize);
    if (blocksNeeded > blockPool.numBlocks) {
      throw new RequestRejectedError(
        'kv_cache_too_small',
        `the request needs ${blocksNeeded} KV blocks (${numTokensAtMost} tokens) but the whole KV cache has ${blockPool.numBlocks} ` +
          `(${blockPool.numBlocks * blockSize} tokens); shorten the prompt or max_tokens, or give the KV cache more memory`,
        'max_tokens',
      );
    }
    const request = new Request(init, this.clock(), this.sequence++);
    this.requests.set(request.requestId, request);
    if (request.status === RequestStatus.WaitingForStructuredOutput) this.waitingForStructuredOutput.set(request.requestId, request);
    else this.waiting.add(request);
    return request;
  }

  /**
   * The request's grammar is ready: it becomes schedulable. Returns false for a request that is not waiting for one
   * (unknown, finished, or already marked), so a late compilation result is harmless.
   */
  markStructuredOutputReady(requestId: string): boolean {
    const request = this.waitingForStructuredOutput.get(requestId);
    if (request === undefined) return false;
    this.waitingForStructuredOutput.delete(requestId);
    request.status = RequestStatus.Waiting;
    this.waiting.add(request);
    return true;
  }

  /** Requests whose grammar is still compiling. */
  get numWaitingForStructuredOutput(): number {
    return this.waitingForStructuredOutput.size;
  }

  getRequest(requestId: string): Request | undefined {
    return this.requests.get(requestId);
  }

  hasUnfinishedRequests(): boolean {
    return this.requests.size > 0;
  }

  get numRunningRequests(): number {
    return this.running.length;
  }

  /** Waiting requests, those whose grammar is compiling included. */
  get numWaitingRequests(): number {
    return this.waiting.length + this.waitingForStructuredOutput.size;
  }

  /** Plans one step. See the class comment for the order of decisions. */
  schedule(): SchedulerOutput {
    const { maxNumSeqs, maxNumBatchedTokens, maxModelLen, longPrefillTokenThreshold, enableChunkedPrefill, numMicroBatches } = this.config;
    const maxScheduledRunning = Math.ceil(this.running.length / numMicroBatches);
    const kvCacheManager = this.kvCacheManager;
    let tokenBudget = maxNumBatchedTokens;
    const numScheduledTokens: Record<string, number> = {};
    const scheduledRunning: Request[] = [];
    const scheduledRunningNewBlockIds: (readonly number[])[] = [];
    const scheduledRunningCounts: number[] = [];
    const newRequestCounts: number[] = [];
    const newRequests: Request[] = [];
    const preempted: Request[] = [];

    // 1. Running requests, in order.
    let index = 0;
    while (index < this.running.length && tokenBudget > 0 && scheduledRunning.length < maxScheduledRunning) {
      const request = this.running[index]!;
      let numNewTokens = Math.min(request.numTokens - request.numComputedTokens, request.maxTokensPerStep);
      if (longPrefillTokenThreshold > 0) numNewTokens = Math.min(numNewTokens, longPrefillTokenThreshold);
      numNewTokens = Math.min(numNewTokens, tokenBudget, maxModelLen - 1 - request.numComputedTokens);
      if (numNewTokens <= 0) {
        index += 1;
        continue;
      }
      let newBlocks = kvCacheManager.allocateSlots(request, numNewTokens);
      while (newBlocks === null) {
        const victim = this.pickVictim();
        if (this.running.indexOf(victim) < index) index -= 1; // the requests after it shift down by one
        this.preempt(victim);
        preempted.push(victim);
        const scheduled = numScheduledTokens[victim.requestId];
        if (scheduled !== undefined) {
          // It was given tokens earlier this step: take them back.
          delete numScheduledTokens[victim.requestId];
          tokenBudget += scheduled;
          const position = scheduledRunning.indexOf(victim);
          scheduledRunning.splice(position, 1);
          scheduledRunningNewBlockIds.splice(position, 1);
          scheduledRunningCounts.splice(position, 1);
        }
        if (victim === request) break;
        newBlocks = kvCacheManager.allocateSlots(request, numNewTokens);
      }
      if (newBlocks === null) break; // the request itself was preempted; nothing else can fit either
      scheduledRunning.push(request);
      scheduledRunningCounts.push(numNewTokens);
      numScheduledTokens[request.requestId] = numNewTokens;
      scheduledRunningNewBlockIds.push(newBlocks.length === 0 ? noBlockIds : newBlocks.map((block) => block.blockId));
      tokenBudget -= numNewTokens;
      index += 1;
    }

    // 2. Waiting requests, only if nobody was preempted (room freed by a preemption goes back to the running).
    if (preempted.length === 0) {
      while (this.waiting.length > 0 && tokenBudget > 0 && this.running.length < maxNumSeqs) {
        const request = this.waiting.peek()!;
        const hit = request.numComputedTokens === 0 ? kvCacheManager.getComputedBlocks(request) : undefined;
        const numComputedTokens = request.numComputedTokens + (hit?.numComputedTokens ?? 0);
        let numNewTokens = Math.min(request.numTokens - numComputedTokens, request.maxTokensPerStep);
        if (longPrefillTokenThreshold > 0) numNewTokens = Math.min(numNewTokens, longPrefillTokenThreshold);
        if (!enableChunkedPrefill && numNewTokens > tokenBudget) break;
        numNewTokens = Math.min(numNewTokens, tokenBudget);
        const newBlocks = kvCacheManager.allocateSlots(request, numNewTokens, hit && { newComputedBlocks: hit });
        if (newBlocks === null) break;
        this.waiting.popFront();
        this.running.push(request);
        request.status = RequestStatus.Running;
        request.numComputedTokens = numComputedTokens;
        request.numCachedTokens = hit?.numComputedTokens ?? 0;
        request.firstScheduledTime ??= this.clock();
        newRequests.push(request);
        newRequestCounts.push(numNewTokens);
        numScheduledTokens[request.requestId] = numNewTokens;
        tokenBudget -= numNewTokens;
      }
    }

    const totalNumScheduledTokens = maxNumBatchedTokens - tokenBudget;
    const output: SchedulerOutput = {
      step: this.numSteps,
      scheduledNewRequests: newRequests.map((request): NewRequestData => ({
        requestId: request.requestId,
        tokenIds: [...request.tokenIds],
        numPromptTokens: request.numPromptTokens,
        blockIds: kvCacheManager.getBlockIds(request.requestId),
        numComputedTokens: request.numComputedTokens,
        payload: request.payload,
      })),
      scheduledCachedRequests: {
        requestIds: scheduledRunning.map((request) => request.requestId),
        newTokenIds: scheduledRunning.map((request, position) =>
          request.tokenIds.slice(request.numComputedTokens, request.numComputedTokens + scheduledRunningCounts[position]!),
        ),
        newBlockIds: scheduledRunningNewBlockIds,
        numComputedTokens: scheduledRunning.map((request) => request.numComputedTokens),
      },
      numScheduledTokens,
      totalNumScheduledTokens,
      preemptedRequestIds: preempted.map((request) => request.requestId),
      finishedRequestIds: this.finishedRequestIds,
    };
    this.finishedRequestIds = [];
    this.lastOutput = output;
    this.lastScheduled = [...newRequests, ...scheduledRunning];

    // The scheduled tokens count as computed from now on: the next step plans past them.
    scheduledRunning.forEach((request, position) => (request.numComputedTokens += scheduledRunningCounts[position]!));
    newRequests.forEach((request, position) => (request.numComputedTokens += newRequestCounts[position]!));
    this.numSteps += 1;
    this.numScheduledTokensLastStep = totalNumScheduledTokens;
    this.numScheduledTokensTotal += totalNumScheduledTokens;
    return output;
  }

  /**
   * Applies a step's sampled tokens: appends them, checks the stop conditions (max tokens, max model length, EOS
   * unless ignored, stop token ids; none before min_tokens), frees finished requests' blocks. Returns news for
   * every request that got tokens or finished.
   */
  updateFromOutput(schedulerOutput: SchedulerOutput, modelRunnerOutput: ModelRunnerOutput): RequestUpdate[] {
    const updates: RequestUpdate[] = [];
    let anyFinished = false;
    const scheduled =
      schedulerOutput === this.lastOutput
        ? this.lastScheduled
        : Object.keys(schedulerOutput.numScheduledTokens).flatMap((requestId) => this.requests.get(requestId) ?? []);
    for (const request of scheduled) {
      const requestId = request.requestId;
      // Aborted or preempted while the step ran: its tokens are void.
      if (request.status !== RequestStatus.Running) continue;
      // The step wrote this request's keys and values: its newly full blocks may now be shared.
      this.kvCacheManager.cacheBlocks(request);
      if (request.maxTokens === 0 && request.numComputedTokens >= request.numPromptTokens) {
        // Nothing to generate: the prompt is computed (and scored), so the request is done.
        this.finish(request, RequestStatus.FinishedLengthCapped);
        anyFinished = true;
        updates.push({ requestId, newTokenIds: [], finishReason: 'length', stopReason: undefined, numCachedTokens: request.numCachedTokens });
        continue;
      }
      const sampled = modelRunnerOutput.sampledTokenIds[requestId];
      if (sampled === undefined || sampled.length === 0) continue;
      const newTokenIds: number[] = [];
      let status: RequestStatus | undefined;
      for (const tokenId of sampled) {
        request.appendOutputTokenId(tokenId);
        newTokenIds.push(tokenId);
        status = this.checkStop(request, tokenId);
        if (status !== undefined) break;
      }
      if (status !== undefined) {
        this.finish(request, status);
        anyFinished = true;
      }
      updates.push({
        requestId,
        newTokenIds,
        finishReason: status === undefined ? undefined : finishReasonOf(status),
        stopReason: request.stopReason,
        numCachedTokens: request.numCachedTokens,
      });
    }
    if (anyFinished) this.running = this.running.filter((request) => !isFinished(request.status));
    return updates;
  }

  /**
   * Finishes requests from outside a step: an abort, or a stop string the engine found. Unknown or already
   * finished ids are ignored. Their blocks are freed now; the next `SchedulerOutput` lists them as finished.
   */
  finishRequests(requestIds: Iterable<string> | string, status: RequestStatus): void {
    if (!isFinished(status)) throw new SchedulerError('invalid_status', `finishRequests needs a finished status, got ${RequestStatus[status]}`);
    let anyRunning = false;
    for (const requestId of typeof requestIds === 'string' ? [requestIds] : requestIds) {
      const request = this.requests.get(requestId);
      if (request === undefined) continue;
      if (request.status === RequestStatus.Running) anyRunning = true;
      else if (request.status === RequestStatus.WaitingForStructuredOutput) this.waitingForStructuredOutput.delete(requestId);
      else this.waiting.remove(request);
      this.finish(request, status);
    }
    if (anyRunning) this.running = this.running.filter((request) => !isFinished(request.status));
  }

  makeStats(): SchedulerStats {
    const prefix = this.kvCacheManager.prefixCacheStats;
    return {
      numRunningRequests: this.running.length,
      numWaitingRequests: this.numWaitingRequests,
      kvCacheUsage: this.kvCacheManager.usage,
      numPreemptionsTotal: this.numPreemptionsTotal,
      prefixCacheQueries: prefix.queries,
      prefixCacheHits: prefix.hits,
      numSteps: this.numSteps,
      numScheduledTokensLastStep: this.numScheduledTokensLastStep,
      numScheduledTokensTotal: this.numScheduledTokensTotal,
    };
  }

  /**
   * The stop conditions after one appended token. A stop token wins over the length cap when both hold (the
   * model did stop), but none counts before min_tokens.
   */
  private checkStop(request: Request, tokenId: number): RequestStatus | undefined {
    if (request.numOutputTokens >= request.minTokens) {
      if (!request.ignoreEos && request.eosTokenIds.includes(tokenId)) return RequestStatus.FinishedStopped;
      if (request.stopTokenIds.includes(tokenId)) {
        request.stopReason = tokenId;
        return RequestStatus.FinishedStopped;
      }
    }
    if (request.numTokens >= this.config.maxModelLen || request.numOutputTokens >= request.maxTokens) {
      return RequestStatus.FinishedLengthCapped;
    }
    return undefined;
  }

  /** FCFS: the most recently arrived running request. Priority: the lowest priority, then the latest arrival. */
  private pickVictim(): Request {
    if (this.config.policy === 'fcfs') return this.running[this.running.length - 1]!;
    let victim = this.running[0]!;
    for (const request of this.running) if (comparePriority(request, victim) > 0) victim = request;
    return victim;
  }

  /** Preemption by recompute: blocks freed, back to the waiting queue, generated tokens kept. */
  private preempt(request: Request): void {
    this.running.splice(this.running.indexOf(request), 1);
    this.kvCacheManager.free(request);
    request.status = RequestStatus.Preempted;
    request.numComputedTokens = 0;
    request.numPreemptions += 1;
    this.numPreemptionsTotal += 1;
    this.waiting.prepend(request);
  }

  private finish(request: Request, status: RequestStatus): void {
    request.status = status;
    this.kvCacheManager.free(request);
    this.requests.delete(request.requestId);
    this.finishedRequestIds.push(request.requestId);
  }
}

function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

import type { FinishReason } from './request-status';

/**
 * A request the model runner has not seen (or must rebuild: it was preempted and resumes). Sent in full, once.
 * The runner computes tokens `[numComputedTokens, numComputedTokens + numScheduledTokens)` of `tokenIds`.
 */
export interface NewRequestData {
  readonly requestId: string;
  /** Prompt followed by any tokens generated before a preemption. */
  readonly tokenIds: readonly number[];
  readonly numPromptTokens: number;
  /** The request's whole block table. */
  readonly blockIds: readonly number[];
  /** Tokens already in the KV cache: prefix-cache hits. */
  readonly numComputedTokens: number;
  readonly payload: unknown;
}

/** Requests the runner already holds: only what changed, in parallel arrays (one entry per request). */
export interface CachedRequestData {
  readonly requestIds: readonly string[];
  /** The ids of the tokens scheduled this step (a decode step: the token sampled last step). */
  readonly newTokenIds: readonly (readonly number[])[];
  /** Blocks appended to each request's block table this step (often none). */
  readonly newBlockIds: readonly (readonly number[])[];
  /** Tokens in the KV cache before this step. */
  readonly numComputedTokens: readonly number[];
}

/** One step's plan. Plain and serializable: it may cross a worker boundary as it is. */
export interface SchedulerOutput {
  readonly step: number;
  readonly scheduledNewRequests: readonly NewRequestData[];
  readonly scheduledCachedRequests: CachedRequestData;
  /** Tokens each scheduled request computes this step. */
  readonly numScheduledTokens: Readonly<Record<string, number>>;
  readonly totalNumScheduledTokens: number;
  /** Requests preempted this step: the runner drops its state for them (they return as new requests). */
  readonly preemptedRequestIds: readonly string[];
  /** Requests finished (or aborted) since the last step: the runner drops its state for them. */
  readonly finishedRequestIds: readonly string[];
}

/** What the model runner returns for a step: the tokens sampled for each request that reached a sampling point. */
export interface ModelRunnerOutput {
  /** Per request id, the tokens sampled this step; requests still mid-prefill are absent (or have none). */
  readonly sampledTokenIds: Readonly<Record<string, readonly number[]>>;
}

/** One request's news from a step, for the engine to detokenize and stream. */
export interface RequestUpdate {
  readonly requestId: string;
  readonly newTokenIds: readonly number[];
  /** Set when the request finished this step. */
  readonly finishReason: FinishReason | undefined;
  /** The stop token id that finished it, if one did. */
  readonly stopReason: number | undefined;
  readonly numCachedTokens: number;
}

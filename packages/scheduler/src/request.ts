import type { BlockHash, KVCacheRequest } from '@pagoda/kv-cache';
import { RequestStatus } from './request-status';

/** What a caller hands the scheduler for one sequence. */
export interface RequestInit {
  requestId: string;
  promptTokenIds: readonly number[];
  /** Maximum number of tokens to generate; 0: none, the request ends once its prompt is computed (scoring). */
  maxTokens: number;
  /** EOS and stop token ids do not finish the request before this many tokens were generated. */
  minTokens?: number;
  /** The model's end-of-sequence ids; ignored when `ignoreEos`. */
  eosTokenIds?: readonly number[];
  stopTokenIds?: readonly number[];
  ignoreEos?: boolean;
  /** Under the priority policy, lower values run first (as in vLLM). */
  priority?: number;
  /** Seconds, on the scheduler's clock; defaults to the time `addRequest` is called. */
  arrivalTime?: number;
  /** Mixed into the prefix-cache hashes, so only requests with the same salt share cached blocks. */
  cacheSalt?: string;
  /** Skip the prefix-cache lookup (e.g. prompt logprobs need every position computed). */
  skipPrefixCache?: boolean;
  /**
   * The most of this request's tokens one step may compute (default: no cap beyond the step's budget): a request
   * whose every position's logits come back (prompt logprobs) is computed in chunks this size, so a long prompt's
   * logits are never held whole.
   */
  maxTokensPerStep?: number;
  /**
   * The request's grammar is still compiling: it starts in `WaitingForStructuredOutput` and is not scheduled until
   * `Scheduler.markStructuredOutputReady` (vLLM's `WAITING_FOR_FSM`).
   */
  waitForStructuredOutput?: boolean;
  /** Opaque data the model runner needs for this request (e.g. sampling parameters); sent once, when it is new. */
  payload?: unknown;
}

/**
 * A request as the scheduler tracks it. `tokenIds` holds the prompt followed by the generated tokens;
 * `numComputedTokens` of them have keys and values in the KV cache. Each step schedules some of the rest.
 */
export class Request implements KVCacheRequest {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly tokenIds: number[];
  readonly outputTokenIds: number[] = [];
  readonly blockHashes: BlockHash[] = [];
  readonly extraKeys: string | undefined;
  readonly skipPrefixCache: boolean;
  readonly maxTokensPerStep: number;
  readonly maxTokens: number;
  readonly minTokens: number;
  readonly eosTokenIds: readonly number[];
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  readonly priority: number;
  readonly arrivalTime: number;
  readonly payload: unknown;
  /** The order in which requests were added; breaks ties between equal arrival times. */
  readonly sequence: number;
  numComputedTokens = 0;
  status: RequestStatus;
  numPreemptions = 0;
  /** Tokens found in the prefix cache when the request was last admitted. */
  numCachedTokens = 0;
  /** When the request was first scheduled, on the scheduler's clock. */
  firstScheduledTime: number | undefined = undefined;
  /** The stop token id that finished the request, if one did. */
  stopReason: number | undefined = undefined;

  constructor(init: RequestInit, arrivalTime: number, sequence: number) {
    this.requestId = init.requestId;
    this.promptTokenIds = [...init.promptTokenIds];
    this.tokenIds = [...init.promptTokenIds];
    this.maxTokens = init.maxTokens;
    this.minTokens = init.minTokens ?? 0;
    this.eosTokenIds = init.eosTokenIds ?? [];
    this.stopTokenIds = init.stopTokenIds ?? [];
    this.ignoreEos = init.ignoreEos ?? false;
    this.priority = init.priority ?? 0;
    this.arrivalTime = init.arrivalTime ?? arrivalTime;
    this.extraKeys = init.cacheSalt;
    this.skipPrefixCache = init.skipPrefixCache ?? false;
    this.maxTokensPerStep = init.maxTokensPerStep ?? Infinity;
    this.payload = init.payload;
    this.sequence = sequence;
    this.status = init.waitForStructuredOutput === true ? RequestStatus.WaitingForStructuredOutput : RequestStatus.Waiting;
  }

  get numTokens(): number {
    return this.tokenIds.length;
  }

  get numPromptTokens(): number {
    return this.promptTokenIds.length;
  }

  get numOutputTokens(): number {
    return this.outputTokenIds.length;
  }

  appendOutputTokenId(tokenId: number): void {
    this.outputTokenIds.push(tokenId);
    this.tokenIds.push(tokenId);
  }
}

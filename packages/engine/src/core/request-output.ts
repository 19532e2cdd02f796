import type { SchedulerStats } from '@pagoda/scheduler';
import type { SampledTokenLogprobs } from '@pagoda/sampling';
import type { FinishReason } from '@pagoda/scheduler';

/** One of a request's n completions. In a stream, `text` and `tokenIds` hold what is new since the last delta. */
export interface CompletionOutput {
  readonly index: number;
  readonly text: string;
  readonly tokenIds: readonly number[];
  /** Per token, when the request asked for logprobs. */
  readonly logprobs: readonly SampledTokenLogprobs[] | undefined;
  readonly finishReason: FinishReason | undefined;
  /** What stopped it: the stop string or the stop token id (undefined for EOS and length). */
  readonly stopReason: string | number | undefined;
}

/** Timings of a finished request, in seconds. */
export interface RequestMetrics {
  readonly arrivalTime: number;
  readonly firstTokenTime: number | undefined;
  readonly finishedTime: number;
  readonly timeToFirstToken: number | undefined;
  /** The gaps between consecutive output tokens. */
  readonly interTokenLatencies: readonly number[];
  readonly e2eLatency: number;
}

export interface RequestOutput {
  readonly requestId: string;
  readonly prompt: string | undefined;
  readonly promptTokenIds: readonly number[];
  readonly outputs: readonly CompletionOutput[];
  readonly finished: boolean;
  /** Prompt tokens found in the prefix cache. */
  readonly numCachedTokens: number;
  readonly metrics: RequestMetrics | undefined;
  /**
   * With `promptLogprobs` (in the one delta that brings them, and in accumulated outputs): per prompt token, its
   * logprob given the tokens before it, and the top alternatives there; `null` for the first token, as in vLLM.
   */
  readonly promptLogprobs?: ReadonlyArray<SampledTokenLogprobs | null>;
  /** A pooling model's vector for the prompt, in the final output (AsyncLLM.embed). */
  readonly embedding?: readonly number[];
}

/** The engine's statistics for metrics: the scheduler's, and the frontend's tokens in and out. */
export interface EngineStats extends SchedulerStats {
  /** Prompt tokens of requests whose prefill finished. */
  readonly promptTokens: number;
  readonly generationTokens: number;
  readonly finishedRequests: number;
}

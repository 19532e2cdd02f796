import type { StructuredOutputsParams } from './structured-outputs';

/**
 * The generation parameters of one request, vLLM's `SamplingParams` in camelCase. Every field is optional; a missing
 * (or `null`) field takes vLLM's default, listed in {@link DEFAULT_SAMPLING_PARAMS}. The API (snake_case) name of
 * each field is what `SamplingParamsError.param` reports.
 */
export interface SamplingParams {
  /** How many completions the request wants (`n`). The caller samples n rows; the sampler sees rows, not requests. */
  readonly n?: number | null;
  /** `temperature`, in [0, 2]. Below {@link GREEDY_TEMPERATURE} sampling is greedy (argmax). */
  readonly temperature?: number | null;
  /** `top_p`, in (0, 1]: keep the most likely tokens whose probabilities sum to at least top_p. */
  readonly topP?: number | null;
  /** `top_k`: keep the k most likely tokens (ties with the k-th kept too); -1 or 0 turns it off. */
  readonly topK?: number | null;
  /** `min_p`, in [0, 1]: drop tokens less likely than min_p times the most likely one. */
  readonly minP?: number | null;
  /** `repetition_penalty`, > 0: over prompt and output ids, positive logits divided by it, negative multiplied. */
  readonly repetitionPenalty?: number | null;
  /** `frequency_penalty`, in [-2, 2]: subtracted once per occurrence of a token in the output. */
  readonly frequencyPenalty?: number | null;
  /** `presence_penalty`, in [-2, 2]: subtracted once from every token present in the output. */
  readonly presencePenalty?: number | null;
  /** `seed`: a seeded request draws from its own generator, so its tokens do not depend on the rest of the batch. */
  readonly seed?: number | null;
  /** `logit_bias`: token id → value added to its logit, clamped to [-100, 100]. JSON objects (string keys) work. */
  readonly logitBias?: Readonly<Record<number, number>> | null;
  /** `max_tokens`, >= 1. Enforced by the caller (the scheduler), not by the sampler. */
  readonly maxTokens?: number | null;
  /** `min_tokens`: until this many tokens are generated, EOS and `stopTokenIds` are masked. */
  readonly minTokens?: number | null;
  /** `stop`: strings that end the output. Applied by the detokenizing caller, not by the sampler. */
  readonly stop?: string | readonly string[] | null;
  /** `stop_token_ids`: ids that end the output (besides EOS). min_tokens masks them. */
  readonly stopTokenIds?: readonly number[] | null;
  /** `ignore_eos`: EOS does not end the output, so min_tokens does not mask it either. */
  readonly ignoreEos?: boolean | null;
  /** `include_stop_str_in_output`: keep the matched stop string at the end of the text. Applied by the detokenizing caller. */
  readonly includeStopStrInOutput?: boolean | null;
  /** Leave special tokens (`<|im_end|>`, `</s>`) out of the output text (vLLM's `skip_special_tokens`, default true). */
  readonly skipSpecialTokens?: boolean | null;
  /** `logprobs`: return the sampled token's logprob and this many top logprobs (0: the sampled token only). */
  readonly logprobs?: number | null;
  /**
   * `prompt_logprobs` (vLLM): the logprob of every prompt token but the first, given those before it, with this many
   * top logprobs at each position (0: the prompt token's only). Prompts asking for it are computed whole (no prefix
   * cache hit), since a cached block has no logits.
   */
  readonly promptLogprobs?: number | null;
  /**
   * `structured_outputs`: one grammar constraint (a JSON schema, any JSON object, a regex, a choice, an EBNF grammar
   * or a structural tag). Plain data here: the engine compiles it and hands the sampler each step's allowed-token
   * bitmask (`SamplingRow.allowedTokenBitmask`).
   */
  readonly structuredOutputs?: StructuredOutputsParams | null;
}

/** {@link SamplingParams} after `validateSamplingParams`: every field present, in range and canonical. */
export interface NormalizedSamplingParams {
  readonly n: number;
  readonly temperature: number;
  readonly topP: number;
  /** 0 when off (-1 is normalized to 0). */
  readonly topK: number;
  readonly minP: number;
  readonly repetitionPenalty: number;
  readonly frequencyPenalty: number;
  readonly presencePenalty: number;
  readonly seed: number | null;
  /** Integer ids inside the vocabulary, values clamped to [-100, 100]. */
  readonly logitBias: Readonly<Record<number, number>>;
  readonly maxTokens: number;
  readonly minTokens: number;
  readonly stop: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  readonly includeStopStrInOutput: boolean;
  readonly skipSpecialTokens: boolean;
  readonly logprobs: number | null;
  readonly promptLogprobs: number | null;
  /** Only its one constraint set; null when the output is free. */
  readonly structuredOutputs: StructuredOutputsParams | null;
}

/** Temperatures below this are greedy sampling (vLLM's `_SAMPLING_EPS`). */
export const GREEDY_TEMPERATURE = 1e-5;

/** vLLM's defaults. */
export const DEFAULT_SAMPLING_PARAMS: NormalizedSamplingParams = Object.freeze({
  n: 1,
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  seed: null,
  logitBias: Object.freeze({}),
  maxTokens: 16,
  minTokens: 0,
  stop: Object.freeze([]),
  stopTokenIds: Object.freeze([]),
  ignoreEos: false,
  includeStopStrInOutput: false,
  skipSpecialTokens: true,
  logprobs: null,
  promptLogprobs: null,
  structuredOutputs: null,
});

/**
 * What the sampler needs to know of a request besides its parameters. The arrays are read, never kept or changed,
 * so the caller may pass the same growing array every step.
 */
export interface SamplingHistory {
  /** The prompt's ids: repetition_penalty counts them. */
  readonly promptTokenIds: ArrayLike<number>;
  /** The ids generated so far: every penalty counts them; their number is the step that min_tokens and seeds use. */
  readonly outputTokenIds: ArrayLike<number>;
  /**
   * The model's end-of-sequence ids (from its generation config), which min_tokens masks with `stopTokenIds` unless
   * `ignoreEos`. Only min_tokens reads them; leave them out when it is not used.
   */
  readonly eosTokenIds?: ArrayLike<number>;
}

/**
 * Which tokens a step may sample, as XGrammar and vLLM lay it out: token `id` is allowed when bit `id % 32` of word
 * `Math.floor(id / 32)` is set. Ids past the mask's end are masked too (a grammar's vocabulary never exceeds the
 * model's, and padding ids are never allowed).
 */
export type TokenBitmask = Int32Array;

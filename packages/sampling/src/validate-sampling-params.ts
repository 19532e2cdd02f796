import { SamplingParamsError, describeValue } from './errors';
import type { NormalizedSamplingParams, SamplingParams } from './sampling-params';
import { DEFAULT_SAMPLING_PARAMS, GREEDY_TEMPERATURE } from './sampling-params';
import { normalizeStructuredOutputs } from './structured-outputs';

export interface ValidateSamplingParamsOptions {
  /** The model's vocabulary size: logit_bias and stop_token_ids ids must be below it. */
  readonly vocabSize: number;
  /** The most top logprobs a request may ask for (the server's `max_logprobs`; vLLM's default is 20). */
  readonly maxLogprobs?: number;
}

const LOGIT_BIAS_LIMIT = 100;

/**
 * Checks a request's parameters against the ranges of DESIGN.md (Validation) and returns them normalized: defaults
 * filled in, top_k -1 → 0, logit_bias values clamped to [-100, 100], `stop` as an array, and, for greedy requests
 * (temperature below 1e-5), top_p, top_k and min_p reset as vLLM does. Throws a {@link SamplingParamsError} naming
 * the first parameter out of range. Accepts untyped input (parsed JSON) as well: wrong types are range errors too.
 */
export function validateSamplingParams(
  params: SamplingParams,
  { vocabSize, maxLogprobs = 20 }: ValidateSamplingParamsOptions,
): NormalizedSamplingParams {
  if (!Number.isInteger(vocabSize) || vocabSize < 1) {
    throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
  }
  const defaults = DEFAULT_SAMPLING_PARAMS;

  const temperature = numberIn('temperature', params.temperature, defaults.temperature, 0, 2, '[0, 2]');
  const greedy = temperature < GREEDY_TEMPERATURE;
  const n = integerAtLeast('n', params.n, defaults.n, 1, MAX_N);
  if (greedy && n !== 1) {
    throw new SamplingParamsError({ param: 'n', expected: '1 when sampling greedily (temperature 0)', value: n });
  }
  let topP = optional(params.topP, defaults.topP);
  if (!isNumber(topP) || !(topP > 0 && topP <= 1)) {
    throw new SamplingParamsError({ param: 'top_p', expected: 'in (0, 1]', value: topP });
  }
  let topK = optional(params.topK, defaults.topK);
  if (!Number.isInteger(topK) || (topK as number) < -1) {
    throw new SamplingParamsError({ param: 'top_k', expected: '-1 or 0 (off) or an integer >= 1', value: topK });
  }
  if (topK === -1) topK = 0;
  let minP = numberIn('min_p', params.minP, defaults.minP, 0, 1, '[0, 1]');
  const repetitionPenalty = optional(params.repetitionPenalty, defaults.repetitionPenalty);
  if (!isNumber(repetitionPenalty) || !(repetitionPenalty > 0) || repetitionPenalty === Infinity) {
    throw new SamplingParamsError({ param: 'repetition_penalty', expected: '> 0', value: repetitionPenalty });
  }
  const frequencyPenalty = numberIn('frequency_penalty', params.frequencyPenalty, 0, -2, 2, '[-2, 2]');
  const presencePenalty = numberIn('presence_penalty', params.presencePenalty, 0, -2, 2, '[-2, 2]');

  const seed = optional(params.seed, defaults.seed);
  if (seed !== null && !Number.isSafeInteger(seed)) {
    throw new SamplingParamsError({ param: 'seed', expected: 'an integer', value: seed });
  }

  // 0: no output at all, only the prompt computed (with promptLogprobs, scored): OpenAI's echo with max_tokens 0.
  const maxTokens = integerAtLeast('max_tokens', params.maxTokens, defaults.maxTokens, 0);
  const minTokens = optional(params.minTokens, defaults.minTokens);
  if (!Number.isSafeInteger(minTokens) || minTokens < 0 || minTokens > maxTokens) {
    throw new SamplingParamsError({
      param: 'min_tokens',
      expected: `an integer in [0, max_tokens] = [0, ${maxTokens}]`,
      value: minTokens,
    });
  }

  const logitBias = normalizeLogitBias(optional(params.logitBias, defaults.logitBias), vocabSize);
  const stop = normalizeStop(optional(params.stop, defaults.stop));
  const stopTokenIds = normalizeStopTokenIds(optional(params.stopTokenIds, defaults.stopTokenIds), vocabSize);

  const ignoreEos = optional(params.ignoreEos, defaults.ignoreEos);
  if (typeof ignoreEos !== 'boolean') {
    throw new SamplingParamsError({ param: 'ignore_eos', expected: 'a boolean', value: ignoreEos });
  }

  const includeStopStrInOutput = optional(params.includeStopStrInOutput, defaults.includeStopStrInOutput);
  if (typeof includeStopStrInOutput !== 'boolean') {
    throw new SamplingParamsError({ param: 'include_stop_str_in_output', expected: 'a boolean', value: includeStopStrInOutput });
  }

  const skipSpecialTokens = optional(params.skipSpecialTokens, defaults.skipSpecialTokens);
  if (typeof skipSpecialTokens !== 'boolean') {
    throw new SamplingParamsError({ param: 'skip_special_tokens', expected: 'a boolean', value: skipSpecialTokens });
  }
  const logprobs = optional(params.logprobs, defaults.logprobs);
  if (logprobs !== null && (!Number.isInteger(logprobs) || logprobs < 0 || logprobs > maxLogprobs)) {
    throw new SamplingParamsError({
      param: 'logprobs',
      expected: `an integer in [0, ${maxLogprobs}]`,
      value: logprobs,
      message: `logprobs must be an integer in [0, ${maxLogprobs}] (the server's limit), got ${describeValue(logprobs)}`,
    });
  }

  const promptLogprobs = optional(params.promptLogprobs, defaults.promptLogprobs);
  if (promptLogprobs !== null && (!Number.isInteger(promptLogprobs) || promptLogprobs < 0 || promptLogprobs > maxLogprobs)) {
    throw new SamplingParamsError({
      param: 'prompt_logprobs',
      expected: `an integer in [0, ${maxLogprobs}]`,
      value: promptLogprobs,
      message: `prompt_logprobs must be an integer in [0, ${maxLogprobs}] (the server's limit), got ${describeValue(promptLogprobs)}`,
    });
  }

  const structuredOutputs = normalizeStructuredOutputs(params.structuredOutputs);

  if (greedy) {
    topP = 1;
    topK = 0;
    minP = 0;
  }
  return Object.freeze({
    n,
    temperature,
    topP,
    topK: topK as number,
    minP,
    repetitionPenalty,
    frequencyPenalty,
    presencePenalty,
    seed,
    logitBias,
    maxTokens,
    minTokens,
    stop,
    stopTokenIds,
    ignoreEos,
    includeStopStrInOutput,
    skipSpecialTokens,
    promptLogprobs,
    logprobs,
    structuredOutputs,
  });
}

function optional<T>(value: T | null | undefined, fallback: T): T {
  return value == null ? fallback : value;
}

function isNumber(value: unknown): value is number {
  return typeof value === 'number' && !Number.isNaN(value);
}

function numberIn(
  param: string,
  received: number | null | undefined,
  fallback: number,
  low: number,
  high: number,
  range: string,
): number {
  const value = optional(received, fallback);
  if (!isNumber(value) || value < low || value > high) {
    throw new SamplingParamsError({ param, expected: `in ${range}`, value });
  }
  return value;
}

/** The most completions one request may ask for, as OpenAI's API allows. */
export const MAX_N = 128;

function integerAtLeast(param: string, received: number | null | undefined, fallback: number, low: number, high = Infinity): number {
  const value = optional(received, fallback);
  if (!Number.isSafeInteger(value) || value < low || value > high) {
    throw new SamplingParamsError({ param, expected: high === Infinity ? `an integer >= ${low}` : `an integer in [${low}, ${high}]`, value });
  }
  return value;
}

function normalizeLogitBias(bias: unknown, vocabSize: number): Readonly<Record<number, number>> {
  if (typeof bias !== 'object' || bias === null || Array.isArray(bias)) {
    throw new SamplingParamsError({ param: 'logit_bias', expected: 'an object of token id → bias', value: bias });
  }
  const normalized: Record<number, number> = {};
  for (const [key, value] of Object.entries(bias)) {
    const tokenId = /^\d+$/.test(key) ? Number(key) : Number.NaN;
    if (!Number.isSafeInteger(tokenId) || tokenId >= vocabSize) {
      throw new SamplingParamsError({
        param: 'logit_bias',
        expected: `keyed by token ids in [0, ${vocabSize})`,
        value: key,
        message: `logit_bias token ids must be integers in [0, ${vocabSize}), got ${JSON.stringify(key)}`,
      });
    }
    if (!isNumber(value)) {
      throw new SamplingParamsError({
        param: 'logit_bias',
        expected: 'a number for each token id',
        value,
        message: `logit_bias values must be numbers, got ${describeValue(value)} for token ${tokenId}`,
      });
    }
    normalized[tokenId] = Math.min(LOGIT_BIAS_LIMIT, Math.max(-LOGIT_BIAS_LIMIT, value));
  }
  return Object.freeze(normalized);
}

function normalizeStop(stop: unknown): readonly string[] {
  const strings: unknown[] = typeof stop === 'string' ? [stop] : Array.isArray(stop) ? stop : [stop];
  for (const value of strings) {
    if (typeof value !== 'string' || value.length === 0) {
      throw new SamplingParamsError({ param: 'stop', expected: 'a non-empty string or list of them', value });
    }
  }
  return Object.freeze(strings.slice() as string[]);
}

function normalizeStopTokenIds(ids: unknown, vocabSize: number): readonly number[] {
  if (!Array.isArray(ids)) {
    throw new SamplingParamsError({ param: 'stop_token_ids', expected: 'a list of token ids', value: ids });
  }
  for (const id of ids) {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocabSize) {
      throw new SamplingParamsError({
        param: 'stop_token_ids',
        expected: `token ids in [0, ${vocabSize})`,
        value: id,
        message: `stop_token_ids must be token ids in [0, ${vocabSize}), got ${describeValue(id)}`,
      });
    }
  }
  return Object.freeze(ids.slice() as number[]);
}

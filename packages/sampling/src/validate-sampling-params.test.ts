import { describe, expect, it } from 'vitest';
import type { SamplingParams } from './index';
import { DEFAULT_SAMPLING_PARAMS, SamplingError, SamplingParamsError, validateSamplingParams } from './index';

const options = { vocabSize: 1000, maxLogprobs: 20 };

function errorOf(params: Record<string, unknown>): SamplingParamsError {
  try {
    validateSamplingParams(params as SamplingParams, options);
  } catch (error) {
    if (SamplingParamsError.isInstance(error)) return error;
    throw error;
  }
  throw new Error(`accepted ${JSON.stringify(params)}`);
}

describe('validateSamplingParams', () => {
  it('fills in vLLM\'s defaults', () => {
    expect(validateSamplingParams({}, options)).toEqual(DEFAULT_SAMPLING_PARAMS);
    expect(DEFAULT_SAMPLING_PARAMS).toMatchObject({ n: 1, temperature: 1, topP: 1, topK: 0, minP: 0, maxTokens: 16 });
    expect(DEFAULT_SAMPLING_PARAMS).toMatchObject({ repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0 });
  });

  it('treats null as absent', () => {
    expect(validateSamplingParams({ temperature: null, seed: null, stop: null }, options)).toEqual(DEFAULT_SAMPLING_PARAMS);
  });

  it.each([
    [{ temperature: -0.1 }, 'temperature', 'temperature must be in [0, 2], got -0.1'],
    [{ temperature: 2.5 }, 'temperature', 'temperature must be in [0, 2], got 2.5'],
    [{ topP: 1.5 }, 'top_p', 'top_p must be in (0, 1], got 1.5'],
    [{ topP: 0 }, 'top_p', 'top_p must be in (0, 1], got 0'],
    [{ topK: -2 }, 'top_k', 'top_k must be -1 or 0 (off) or an integer >= 1, got -2'],
    [{ topK: 2.5 }, 'top_k', 'top_k must be -1 or 0 (off) or an integer >= 1, got 2.5'],
    [{ minP: 1.1 }, 'min_p', 'min_p must be in [0, 1], got 1.1'],
    [{ repetitionPenalty: 0 }, 'repetition_penalty', 'repetition_penalty must be > 0, got 0'],
    [{ frequencyPenalty: 2.1 }, 'frequency_penalty', 'frequency_penalty must be in [-2, 2], got 2.1'],
    [{ presencePenalty: -3 }, 'presence_penalty', 'presence_penalty must be in [-2, 2], got -3'],
    [{ maxTokens: -1 }, 'max_tokens', 'max_tokens must be an integer >= 0, got -1'],
    [{ maxTokens: 0, minTokens: 1 }, 'min_tokens', 'min_tokens must be an integer in [0, max_tokens] = [0, 0], got 1'],
    [{ promptLogprobs: 21 }, 'prompt_logprobs', "prompt_logprobs must be an integer in [0, 20] (the server's limit), got 21"],
    [{ maxTokens: 10, minTokens: 11 }, 'min_tokens', 'min_tokens must be an integer in [0, max_tokens] = [0, 10], got 11'],
    [{ n: 0 }, 'n', 'n must be an integer in [1, 128], got 0'],
    [{ n: 129, temperature: 1 }, 'n', 'n must be an integer in [1, 128], got 129'],
    [{ n: 2, temperature: 0 }, 'n', 'n must be 1 when sampling greedily (temperature 0), got 2'],
    [{ logprobs: 21 }, 'logprobs', "logprobs must be an integer in [0, 20] (the server's limit), got 21"],
    [{ logitBias: { 1000: 1 } }, 'logit_bias', 'logit_bias token ids must be integers in [0, 1000), got "1000"'],
    [{ logitBias: { '-1': 1 } }, 'logit_bias', 'logit_bias token ids must be integers in [0, 1000), got "-1"'],
    [{ logitBias: { 5: 'x' } }, 'logit_bias', 'logit_bias values must be numbers, got "x" for token 5'],
    [{ stop: ['ok', ''] }, 'stop', 'stop must be a non-empty string or list of them, got ""'],
    [{ stop: '' }, 'stop', 'stop must be a non-empty string or list of them, got ""'],
    [{ stopTokenIds: [1, 5000] }, 'stop_token_ids', 'stop_token_ids must be token ids in [0, 1000), got 5000'],
    [{ seed: 1.5 }, 'seed', 'seed must be an integer, got 1.5'],
    [{ temperature: '0.7' }, 'temperature', 'temperature must be in [0, 2], got "0.7"'],
    [{ ignoreEos: 'yes' }, 'ignore_eos', 'ignore_eos must be a boolean, got "yes"'],
  ])('refuses %j, naming %s', (params, param, message) => {
    const error = errorOf(params);
    expect(error.param).toBe(param);
    expect(error.message).toBe(message);
    expect(error.code).toBe('invalid_sampling_params');
  });

  it('normalizes: top_k -1 → 0, logit_bias clamped and keyed by number, stop as a list', () => {
    const params = validateSamplingParams({ topK: -1, logitBias: { 7: 300, 8: -250, 9: 1.5 }, stop: 'END' }, options);
    expect(params.topK).toBe(0);
    expect(params.logitBias).toEqual({ 7: 100, 8: -100, 9: 1.5 });
    expect(params.stop).toEqual(['END']);
  });

  it('resets top_p, top_k and min_p for greedy requests, as vLLM does', () => {
    const params = validateSamplingParams({ temperature: 0, topP: 0.5, topK: 3, minP: 0.2 }, options);
    expect(params).toMatchObject({ temperature: 0, topP: 1, topK: 0, minP: 0, n: 1 });
  });

  it('accepts the edges of every range', () => {
    expect(() =>
      validateSamplingParams(
        { temperature: 2, topP: 1, topK: 1, minP: 1, frequencyPenalty: -2, presencePenalty: 2, logprobs: 20, n: 4 },
        options,
      ),
    ).not.toThrow();
    expect(() => validateSamplingParams({ minTokens: 16, maxTokens: 16, logprobs: 0, seed: -5 }, options)).not.toThrow();
  });
});

describe('SamplingError', () => {
  it('is recognized by isInstance, also when made by another copy of the package (the Symbol.for brand)', () => {
    const error = errorOf({ topP: 2 });
    expect(SamplingError.isInstance(error)).toBe(true);
    expect(SamplingParamsError.isInstance(error)).toBe(true);
    expect(error).toBeInstanceOf(Error);
    const fromAnotherCopy = Object.assign(new Error('x'), {
      [Symbol.for('pagoda.sampling.error')]: true,
      [Symbol.for('pagoda.sampling.error.SamplingParamsError')]: true,
    });
    expect(SamplingParamsError.isInstance(fromAnotherCopy)).toBe(true);
    expect(SamplingError.isInstance(new Error('x'))).toBe(false);
    expect(SamplingParamsError.isInstance(new SamplingError({ code: 'other', message: 'x' }))).toBe(false);
    expect(SamplingError.isInstance(null)).toBe(false);
  });

  it('carries the parameter, the expected range, the value and the cause', () => {
    const cause = new Error('root');
    const error = new SamplingParamsError({ param: 'top_p', expected: 'in (0, 1]', value: 3, cause });
    expect(error).toMatchObject({ param: 'top_p', expected: 'in (0, 1]', value: 3, cause, name: 'SamplingParamsError' });
    expect(error.message).toBe('top_p must be in (0, 1], got 3');
  });
});

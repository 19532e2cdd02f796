import { describe, expect, it } from 'vitest';
import type { SamplingHistory, SamplingParams } from './index';
import { processLogits } from './index';

// Hand-computed expectations for the processors Hugging Face has no oracle for, from the formulas of the pipeline:
// logit_bias → min_tokens → repetition (prompt ∪ output) → frequency/presence (output) → temperature.
const row = new Float32Array([1, -2, 3, 0.5, -1, 2]);
const history: SamplingHistory = { promptTokenIds: [0, 1, 0], outputTokenIds: [2, 2, 3] };

function run(params: SamplingParams, rowHistory: SamplingHistory = history): number[] {
  return Array.from(processLogits(row, params, rowHistory));
}

describe('frequency and presence penalties', () => {
  it('subtract count·frequency + presence from output tokens only', () => {
    // token 2 twice: 3 − 2·0.5 − 0.25; token 3 once: 0.5 − 0.5 − 0.25; prompt tokens 0 and 1 untouched.
    expect(run({ frequencyPenalty: 0.5, presencePenalty: 0.25 })).toEqual([1, -2, 1.75, -0.25, -1, 2]);
  });

  it('reward repeats when negative', () => {
    expect(run({ frequencyPenalty: -1 })).toEqual([1, -2, 5, 1.5, -1, 2]);
  });

  it('do nothing before the first output token', () => {
    expect(run({ frequencyPenalty: 2, presencePenalty: 2 }, { promptTokenIds: [0, 1, 2], outputTokenIds: [] })).toEqual(
      Array.from(row),
    );
  });
});

describe('repetition penalty', () => {
  it('divides positive and multiplies negative logits of prompt and output tokens, once per token', () => {
    // {0, 1, 2, 3}: 1/2, −2·2, 3/2, 0.5/2; tokens 4 and 5 never appeared.
    expect(run({ repetitionPenalty: 2 })).toEqual([0.5, -4, 1.5, 0.25, -1, 2]);
  });

  it('comes before frequency and presence', () => {
    // token 2: 3/2 − 2·0.5 − 0.25 = 0.25 (the other order would give (3 − 1.25)/2 = 0.875); token 3: 0.25 − 0.75.
    expect(run({ repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25 })).toEqual([
      0.5, -4, 0.25, -0.5, -1, 2,
    ]);
  });
});

describe('logit bias', () => {
  it('adds the bias to the named tokens, clamped to [-100, 100]', () => {
    expect(run({ logitBias: { 1: 5, 4: 250, 5: -1000 } })).toEqual([1, 3, 3, 0.5, 99, -98]);
  });

  it('accepts a JSON object with string keys', () => {
    const logitBias = JSON.parse('{"3": 1.5}') as Record<string, number>;
    expect(run({ logitBias })).toEqual([1, -2, 3, 2, -1, 2]);
  });

  it('comes before the repetition penalty', () => {
    // token 0 is in the prompt: (1 + 1)/2 = 1, not 1/2 + 1.
    expect(run({ logitBias: { 0: 1 }, repetitionPenalty: 2 })[0]).toBe(1);
  });
});

describe('min_tokens', () => {
  const eosHistory: SamplingHistory = { ...history, eosTokenIds: [5] };

  it('masks EOS and stop token ids while the output is shorter than min_tokens', () => {
    expect(run({ minTokens: 4, stopTokenIds: [1] }, eosHistory)).toEqual([1, -Infinity, 3, 0.5, -1, -Infinity]);
  });

  it('stops masking once min_tokens are generated', () => {
    expect(run({ minTokens: 3, stopTokenIds: [1] }, eosHistory)).toEqual(Array.from(row));
  });

  it('leaves EOS alone with ignore_eos, but still masks stop ids', () => {
    expect(run({ minTokens: 4, stopTokenIds: [1], ignoreEos: true }, eosHistory)).toEqual([1, -Infinity, 3, 0.5, -1, 2]);
  });

  it('masks EOS even when a logit bias favours it', () => {
    expect(run({ minTokens: 4, logitBias: { 5: 100 } }, eosHistory)[5]).toBe(-Infinity);
  });
});

describe('temperature and greedy rows', () => {
  it('divides every logit by the temperature', () => {
    expect(run({ temperature: 0.5 })).toEqual([2, -4, 6, 1, -2, 4]);
  });

  it('keeps only the argmax, after penalties, when the temperature is below 1e-5', () => {
    // with repetition 2, token 2 falls to 1.5 and token 5 (2) becomes the argmax.
    expect(run({ temperature: 0, repetitionPenalty: 2 })).toEqual([
      -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, 2,
    ]);
  });
});

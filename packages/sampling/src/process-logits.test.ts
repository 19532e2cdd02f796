import { decodeFloat32Base64, readFixtureJson } from '@pagoda/fixtures';
import { describe, expect, it } from 'vitest';
import type { SamplingHistory, SamplingParams } from './index';
import { Sampler, processLogits, softmax } from './index';

interface SamplingFixture {
  logits_f32_b64: string;
  prev_ids: number[];
  cases: Array<{ params: Record<string, number>; order: string[]; kept: number[]; probs: number[] }>;
}

const fixture = readFixtureJson<SamplingFixture>('sampling.json');
const logits = decodeFloat32Base64(fixture.logits_f32_b64);
// Hugging Face's repetition penalty reads the ids already in the sequence: here, the prompt.
const history: SamplingHistory = { promptTokenIds: fixture.prev_ids, outputTokenIds: [] };

function camelCaseParams(params: Record<string, number>): SamplingParams {
  return {
    temperature: params.temperature,
    topP: params.top_p,
    topK: params.top_k,
    minP: params.min_p,
    repetitionPenalty: params.repetition_penalty,
  };
}

function keptTokens(probabilities: Float32Array): number[] {
  const kept: number[] = [];
  probabilities.forEach((probability, tokenId) => {
    if (probability > 0) kept.push(tokenId);
  });
  return kept;
}

describe('processLogits against Hugging Face logits processors (sampling.json)', () => {
  it('covers all twelve cases of the oracle', () => {
    expect(fixture.cases).toHaveLength(12);
  });

  it.each(fixture.cases.map((testCase) => [testCase.order.join(' → '), JSON.stringify(testCase.params), testCase]))(
    '%s %s: same kept tokens, probabilities within 1e-5',
    (_order, _params, { params, kept, probs }) => {
      const probabilities = softmax(processLogits(logits, camelCaseParams(params), history));
      expect(keptTokens(probabilities)).toEqual([...kept].sort((left, right) => left - right));
      kept.forEach((tokenId, index) => {
        expect(Math.abs(probabilities[tokenId]! - probs[index]!)).toBeLessThan(1e-5);
      });
    },
  );

  it.each(fixture.cases.map((testCase) => [JSON.stringify(testCase.params), testCase]))(
    'the Sampler only emits tokens Hugging Face keeps (%s)',
    (_params, { params, kept }) => {
      const keptSet = new Set(kept);
      let draw = 0;
      const sampler = new Sampler({ random: () => ((draw += 1) % 200) / 200 });
      const rows = Array.from({ length: 200 }, () => ({ params: camelCaseParams(params), history }));
      const batch = new Float32Array(logits.length * rows.length);
      rows.forEach((_, index) => batch.set(logits, index * logits.length));
      for (const tokenId of sampler.sample({ logits: batch, rows }).tokenIds) expect(keptSet.has(tokenId)).toBe(true);
    },
  );

  it('does not modify the logits it is given', () => {
    const copy = logits.slice();
    processLogits(copy, { repetitionPenalty: 1.3, temperature: 0.5, topK: 5, logitBias: { 1: 3 } }, history);
    expect(copy).toEqual(logits);
  });

  it('may write its result over its input', () => {
    const params = { temperature: 0.7, topP: 0.9, repetitionPenalty: 1.3 };
    const expected = processLogits(logits, params, history);
    const row = logits.slice();
    processLogits(row, params, history, row);
    expect(row).toEqual(expected);
  });
});

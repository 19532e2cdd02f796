import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SamplingParams } from './index';
import { Sampler, processLogits, softmax } from './index';

/**
 * The straightforward reading of the pipeline's steps 5–8 over a whole row: scale, softmax, mask min_p, mask below
 * the k-th largest, then sort everything and cut top_p. Returns the processed logits (-Infinity where masked).
 */
function referenceLogits(logits: Float32Array, params: SamplingParams): number[] {
  const temperature = params.temperature ?? 1;
  let scaled = Array.from(logits, (value) => value / temperature);
  const minP = params.minP ?? 0;
  if (minP > 0) {
    const probabilities = normalize(scaled);
    const threshold = minP * Math.max(...probabilities);
    scaled = scaled.map((value, index) => (probabilities[index]! < threshold ? -Infinity : value));
  }
  const topK = params.topK ?? 0;
  if (topK > 0 && topK < scaled.length) {
    const kth = [...scaled].sort((left, right) => right - left)[topK - 1]!;
    scaled = scaled.map((value) => (value < kth ? -Infinity : value));
  }
  const topP = params.topP ?? 1;
  if (topP < 1) {
    const probabilities = normalize(scaled);
    const order = probabilities.map((_, index) => index).sort((left, right) => probabilities[right]! - probabilities[left]!);
    let mass = 0;
    const kept = new Set<number>();
    for (const index of order) {
      if (mass >= topP) break;
      kept.add(index);
      mass += probabilities[index]!;
    }
    scaled = scaled.map((value, index) => (kept.has(index) ? value : -Infinity));
  }
  return scaled;
}

function normalize(values: number[]): number[] {
  const max = Math.max(...values);
  const exps = values.map((value) => (value === -Infinity ? 0 : Math.exp(value - max)));
  const sum = exps.reduce((total, value) => total + value, 0);
  return exps.map((value) => value / sum);
}

// Logits on a coarse grid so that ties (at the k-th value, inside top_p) happen often.
const rowArbitrary = fc
  .array(fc.integer({ min: -40, max: 40 }), { minLength: 2, maxLength: 300 })
  .map((values) => new Float32Array(values.map((value) => value / 4)));

const paramsArbitrary: fc.Arbitrary<SamplingParams> = fc.record({
  temperature: fc.double({ min: 0.05, max: 2, noNaN: true }),
  topK: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 60 })),
  topP: fc.oneof(fc.constant(1), fc.double({ min: 0.01, max: 1, noNaN: true })),
  minP: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1, noNaN: true })),
});

/** True when some cut (top_p's cumulative mass, min_p's ratio) lands within rounding of a boundary. */
function nearBoundary(logits: Float32Array, params: SamplingParams): boolean {
  const probabilities = normalize(
    referenceLogits(logits, { temperature: params.temperature, topK: params.topK, minP: params.minP }),
  );
  const max = Math.max(...probabilities);
  if ((params.minP ?? 0) > 0 && probabilities.some((probability) => Math.abs(probability / max - params.minP!) < 1e-6)) {
    return true;
  }
  const topP = params.topP ?? 1;
  if (topP >= 1) return false;
  const sorted = probabilities.filter((probability) => probability > 0).sort((left, right) => right - left);
  let mass = 0;
  for (const probability of sorted) {
    if (Math.abs(mass - topP) < 1e-6) return true;
    mass += probability;
  }
  return false;
}

describe('top_k, top_p and min_p (property-based)', () => {
  it('processLogits keeps exactly the tokens of the full-sort reference, with its probabilities', () => {
    fc.assert(
      fc.property(rowArbitrary, paramsArbitrary, (logits, params) => {
        fc.pre(!nearBoundary(logits, params));
        const processed = processLogits(logits, params, { promptTokenIds: [], outputTokenIds: [] });
        const ours = softmax(processed);
        const reference = referenceLogits(logits, params);
        const probabilities = normalize(reference);
        reference.forEach((logit, tokenId) => {
          expect(processed[tokenId]! > -Infinity).toBe(logit > -Infinity);
          expect(Math.abs(ours[tokenId]! - probabilities[tokenId]!)).toBeLessThan(1e-5);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('top_k keeps every token tied with the k-th largest logit, and nothing below it', () => {
    const tiedRow = fc
      .array(fc.integer({ min: 0, max: 6 }), { minLength: 2, maxLength: 400 })
      .map((values) => new Float32Array(values));
    fc.assert(
      fc.property(tiedRow, fc.integer({ min: 1, max: 30 }), (logits, topK) => {
        const processed = processLogits(logits, { topK }, { promptTokenIds: [], outputTokenIds: [] });
        const reference = referenceLogits(logits, { topK });
        reference.forEach((logit, tokenId) => expect(processed[tokenId]! > -Infinity).toBe(logit > -Infinity));
      }),
      { numRuns: 300 },
    );
  });

  it('the Sampler never emits a token that top_k, top_p or min_p masked, for any uniform draw', () => {
    fc.assert(
      fc.property(rowArbitrary, paramsArbitrary, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (logits, params, uniform) => {
        const processed = processLogits(logits, params, { promptTokenIds: [], outputTokenIds: [] });
        const sampler = new Sampler({ random: () => uniform });
        const [tokenId] = sampler.sample({ logits, rows: [{ params, history: { promptTokenIds: [], outputTokenIds: [] } }] }).tokenIds;
        expect(processed[tokenId!]).toBeGreaterThan(-Infinity);
      }),
      { numRuns: 500 },
    );
  });

  it('extreme draws (0 and just below 1) land on kept tokens', () => {
    const logits = new Float32Array([5, 4, 3, 2, 1, 0, -1]);
    for (const uniform of [0, 1 - 2 ** -53]) {
      for (const params of [{ topK: 3 }, { topP: 0.5 }, { minP: 0.2 }, { topK: 5, topP: 0.9, minP: 0.1 }]) {
        const processed = processLogits(logits, params, { promptTokenIds: [], outputTokenIds: [] });
        const [tokenId] = new Sampler({ random: () => uniform })
          .sample({ logits, rows: [{ params, history: { promptTokenIds: [], outputTokenIds: [] } }] }).tokenIds;
        expect(processed[tokenId!]).toBeGreaterThan(-Infinity);
      }
    }
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SamplingParams, TokenBitmask } from './index';
import { Sampler, processLogits } from './index';

function bitmaskOf(vocabSize: number, allowed: Iterable<number>): TokenBitmask {
  const bitmask = new Int32Array(Math.ceil(vocabSize / 32));
  for (const tokenId of allowed) bitmask[tokenId >> 5]! |= 1 << (tokenId & 31);
  return bitmask;
}

const modes: Array<[string, SamplingParams]> = [
  ['greedy', { temperature: 0 }],
  ['plain', { temperature: 1 }],
  ['top-k', { temperature: 0.8, topK: 3 }],
  ['top-p', { temperature: 1.2, topP: 0.5 }],
  ['min-p', { temperature: 1, minP: 0.2 }],
  ['penalties and bias', { temperature: 0.7, repetitionPenalty: 1.3, presencePenalty: 1, logitBias: { 0: 100, 1: 50 } }],
  ['seeded with logprobs', { temperature: 1, seed: 11, logprobs: 5 }],
];

describe('the allowed-token bitmask', () => {
  it.each(modes)('never lets a masked token through (%s), however strong its logit', (_name, params) => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -20, max: 20, noNaN: true }), { minLength: 40, maxLength: 90 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        (values, picks, randomSeed) => {
          const logits = new Float32Array(values);
          const vocabSize = logits.length;
          const allowed = new Set(picks.map((pick) => pick % vocabSize));
          // The strongest logits belong to masked tokens, so only the mask keeps them out.
          for (let tokenId = 0; tokenId < vocabSize; tokenId += 1) if (!allowed.has(tokenId)) logits[tokenId] = logits[tokenId]! + 30;
          let state = randomSeed;
          const sampler = new Sampler({ random: () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) });
          const rows = [0, 1, 2].map(() => ({
            params,
            history: { promptTokenIds: [0, 1], outputTokenIds: [1] },
            allowedTokenBitmask: bitmaskOf(vocabSize, allowed),
          }));
          const batch = new Float32Array(vocabSize * rows.length);
          for (let row = 0; row < rows.length; row += 1) batch.set(logits, row * vocabSize);
          const output = sampler.sample({ logits: batch, rows });
          for (let row = 0; row < rows.length; row += 1) {
            expect(allowed.has(output.tokenIds[row]!)).toBe(true);
            const logprobs = output.logprobs[row];
            if (logprobs != null) {
              expect(logprobs.top.filter((entry) => !allowed.has(entry.tokenId)).every((entry) => entry.logprob === -Infinity)).toBe(true);
            }
          }
          const processed = processLogits(logits, params, { promptTokenIds: [0, 1], outputTokenIds: [1] }, undefined, bitmaskOf(vocabSize, allowed));
          processed.forEach((value, tokenId) => {
            if (!allowed.has(tokenId)) expect(value).toBe(-Infinity);
          });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('masks ids past the end of a short mask, and leaves an unmasked row as it was', () => {
    const logits = new Float32Array(40).map((_, index) => index);
    // One word: ids 32..39 have no bits and are masked.
    const bitmask = new Int32Array([1 << 3]);
    expect(new Sampler().sample({ logits, rows: [{ params: { temperature: 0 }, history: { promptTokenIds: [], outputTokenIds: [] }, allowedTokenBitmask: bitmask }] }).tokenIds[0]).toBe(3);
    expect(new Sampler().sample({ logits, rows: [{ params: { temperature: 0 }, history: { promptTokenIds: [], outputTokenIds: [] } }] }).tokenIds[0]).toBe(39);
  });

  it('reports logprobs of the masked distribution, as vLLM does (the mask precedes the sampler)', () => {
    const logits = new Float32Array([0, 1, 2, 3]);
    const { logprobs } = new Sampler().sample({
      logits,
      rows: [{ params: { temperature: 0, logprobs: 2 }, history: { promptTokenIds: [], outputTokenIds: [] }, allowedTokenBitmask: bitmaskOf(4, [0, 1]) }],
    });
    const expected = 1 - Math.log(1 + Math.E);
    expect(logprobs[0]!.tokenId).toBe(1);
    expect(logprobs[0]!.logprob).toBeCloseTo(expected, 6);
    expect(logprobs[0]!.rank).toBe(1);
    expect(logprobs[0]!.top.map((entry) => entry.tokenId)).toEqual([1, 0]);
  });

  it('with every token masked, refuses to sample rather than pick a masked one', () => {
    const logits = new Float32Array([0, 1, 2, 3]);
    expect(() =>
      new Sampler().sample({ logits, rows: [{ params: { temperature: 1 }, history: { promptTokenIds: [], outputTokenIds: [] }, allowedTokenBitmask: new Int32Array(1) }] }),
    ).toThrow(RangeError);
  });
});

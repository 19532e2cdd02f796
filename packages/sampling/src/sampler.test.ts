import { describe, expect, it } from 'vitest';
import type { SamplingHistory, SamplingParams, SamplingRow } from './index';
import { Sampler, SeededGenerator, logSoftmax } from './index';

function history(outputTokenIds: number[] = [], promptTokenIds: number[] = [1, 2, 3]): SamplingHistory {
  return { promptTokenIds, outputTokenIds };
}

/** Chi-square statistic of observed counts against expected probabilities (over tokens with nonzero probability). */
function chiSquare(counts: number[], probabilities: number[], draws: number): number {
  let statistic = 0;
  probabilities.forEach((probability, tokenId) => {
    if (probability === 0) return;
    const expected = probability * draws;
    statistic += (counts[tokenId]! - expected) ** 2 / expected;
  });
  return statistic;
}

// Critical values of the chi-square distribution at p = 0.001.
const CHI_SQUARE_CRITICAL_0_001: Record<number, number> = { 3: 16.27, 9: 27.88 };

describe('Sampler: distribution of seeded draws', () => {
  const probabilities = [0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005];
  const logits = new Float32Array(probabilities.map((probability) => Math.log(probability) + 4));
  const draws = 20_000;

  function drawSeeded(params: SamplingParams): number[] {
    const sampler = new Sampler({
      random: () => {
        throw new Error('a seeded row must not use the shared random source');
      },
    });
    const counts = new Array<number>(logits.length).fill(0);
    const output: number[] = [];
    const rowHistory = history(output);
    for (let step = 0; step < draws; step += 1) {
      const tokenId = sampler.sample({ logits, rows: [{ params, history: rowHistory }] }).tokenIds[0]!;
      counts[tokenId]! += 1;
      output.push(tokenId); // the step advances the request's generator
    }
    return counts;
  }

  it('matches the softmax over 20,000 draws of one seeded request (chi-square, p > 0.001)', () => {
    const counts = drawSeeded({ seed: 1234 });
    expect(chiSquare(counts, probabilities, draws)).toBeLessThan(CHI_SQUARE_CRITICAL_0_001[9]!);
  });

  it('renormalizes over the tokens top_k keeps, and never draws the others', () => {
    const counts = drawSeeded({ seed: 99, topK: 4 });
    const keptMass = 0.3 + 0.2 + 0.15 + 0.1;
    const expected = probabilities.map((probability, tokenId) => (tokenId < 4 ? probability / keptMass : 0));
    expect(counts.slice(4).every((count) => count === 0)).toBe(true);
    expect(chiSquare(counts, expected, draws)).toBeLessThan(CHI_SQUARE_CRITICAL_0_001[3]!);
  });

  it('is detectably wrong when the distribution is (the test can fail)', () => {
    const counts = drawSeeded({ seed: 1234, temperature: 1.2 });
    expect(chiSquare(counts, probabilities, draws)).toBeGreaterThan(CHI_SQUARE_CRITICAL_0_001[9]!);
  });
});

describe('Sampler: seeds', () => {
  const vocabSize = 50;
  /** A toy model: the next logits depend on the whole sequence so far, as a real model's do. */
  function modelLogits(sequence: readonly number[]): Float32Array {
    const generator = new SeededGenerator(sequence.reduce((hash, tokenId) => (hash * 31 + tokenId) % 1_000_003, 7));
    return new Float32Array(vocabSize).map(() => generator.nextFloat() * 3);
  }

  interface Request {
    prompt: number[];
    params: SamplingParams;
    output: number[];
  }

  /** Runs `steps` decode steps of the requests together, in the batch order `order(step)` gives. */
  function generate(requests: Request[], steps: number, order: (step: number) => number[], sampler: Sampler) {
    for (let step = 0; step < steps; step += 1) {
      const indices = order(step);
      const logits = new Float32Array(vocabSize * indices.length);
      const rows: SamplingRow[] = indices.map((requestIndex, rowIndex) => {
        const request = requests[requestIndex]!;
        logits.set(modelLogits([...request.prompt, ...request.output]), rowIndex * vocabSize);
        return { params: request.params, history: history(request.output, request.prompt) };
      });
      const { tokenIds } = sampler.sample({ logits, rows });
      indices.forEach((requestIndex, rowIndex) => requests[requestIndex]!.output.push(tokenIds[rowIndex]!));
    }
    return requests.map((request) => request.output);
  }

  const params: SamplingParams = { seed: 42, temperature: 0.9, topP: 0.95, repetitionPenalty: 1.1 };

  it('gives the same tokens for the same seed, prompt and params, whatever else is in the batch and in any order', () => {
    const alone = generate([{ prompt: [5, 6, 7], params, output: [] }], 24, () => [0], new Sampler())[0]!;
    const others = (): Request[] => [
      { prompt: [1], params: { temperature: 1 }, output: [] },
      { prompt: [5, 6, 7], params, output: [] },
      { prompt: [9, 9], params: { seed: 7, topK: 5 }, output: [] },
    ];
    const inOrder = generate(others(), 24, () => [0, 1, 2], new Sampler())[1]!;
    const reversedEachStep = generate(others(), 24, (step) => (step % 2 === 0 ? [2, 1, 0] : [1, 0, 2]), new Sampler());
    expect(inOrder).toEqual(alone);
    expect(reversedEachStep[1]).toEqual(alone);
    expect(new Set(alone).size).toBeGreaterThan(5); // it really sampled, not a constant
  });

  it('gives different tokens for different seeds', () => {
    const first = generate([{ prompt: [5, 6, 7], params, output: [] }], 24, () => [0], new Sampler())[0]!;
    const second = generate([{ prompt: [5, 6, 7], params: { ...params, seed: 43 }, output: [] }], 24, () => [0], new Sampler())[0]!;
    expect(second).not.toEqual(first);
  });

  it('draws unseeded rows from the sampler\'s random source, and seeded rows never from it', () => {
    const uniforms = [0.999, 0.001];
    let calls = 0;
    const sampler = new Sampler({ random: () => uniforms[calls++ % uniforms.length]! });
    const logits = new Float32Array([0, 0, 0, 0, 0, 0, 0, 0]); // uniform over 4 + 4
    const rows: SamplingRow[] = [
      { params: {}, history: history() },
      { params: { seed: 3 }, history: history() },
      { params: {}, history: history() },
    ];
    const batch = new Float32Array(24);
    rows.forEach((_, index) => batch.set(logits, index * 8));
    const { tokenIds } = sampler.sample({ logits: batch, rows });
    expect(calls).toBe(2);
    expect(tokenIds[0]).toBe(7); // 0.999 → the last token
    expect(tokenIds[2]).toBe(0); // 0.001 → the first
  });

  it('draws fresh randomness for unseeded rows by default', () => {
    const sampler = new Sampler();
    const rows = Array.from({ length: 64 }, () => ({ params: {}, history: history() }));
    const { tokenIds } = sampler.sample({ logits: new Float32Array(64 * 100), rows });
    expect(new Set(tokenIds).size).toBeGreaterThan(10);
  });
});

describe('Sampler: greedy rows', () => {
  it('takes the argmax of the penalized logits below temperature 1e-5, the first on ties', () => {
    const sampler = new Sampler({ random: () => 0.5 });
    const logits = new Float32Array([1, 5, 5, 4.9, 0]);
    const rows: SamplingRow[] = [
      { params: { temperature: 0 }, history: history() },
      { params: { temperature: 1e-6 }, history: history([1, 1, 2]) },
      { params: { temperature: 0, frequencyPenalty: 1 }, history: history([1, 2]) },
    ];
    const batch = new Float32Array(15);
    rows.forEach((_, index) => batch.set(logits, index * 5));
    expect(Array.from(sampler.sample({ logits: batch, rows }).tokenIds)).toEqual([1, 1, 3]);
  });
});

describe('Sampler: logprobs', () => {
  const logits = new Float32Array([2, -1, 0.5, 3, 3, -Infinity, 1]);
  const expected = Array.from(logSoftmax(logits));

  it('returns the sampled token\'s logprob, rank and the top-N of the raw distribution', () => {
    const sampler = new Sampler();
    const params: SamplingParams = { temperature: 0, logprobs: 3, repetitionPenalty: 2 };
    const { tokenIds, logprobs } = sampler.sample({ logits, rows: [{ params, history: history([], [3]) }] });
    expect(tokenIds[0]).toBe(4); // token 3 is penalized to 1.5 for sampling…
    const result = logprobs[0]!;
    expect(result.tokenId).toBe(4);
    expect(result.logprob).toBeCloseTo(expected[4]!, 6); // …but logprobs describe the model's own distribution
    expect(result.rank).toBe(1);
    expect(result.top.map((entry) => entry.tokenId)).toEqual([3, 4, 0]);
    result.top.forEach((entry) => expect(entry.logprob).toBeCloseTo(expected[entry.tokenId]!, 6));
  });

  it('ranks the sampled token among the raw logits, and logprobs 0 gives it alone', () => {
    const sampler = new Sampler();
    const params: SamplingParams = { temperature: 0, logprobs: 0, logitBias: { 1: 10 } };
    const result = sampler.sample({ logits, rows: [{ params, history: history() }] }).logprobs[0]!;
    expect(result.tokenId).toBe(1);
    expect(result.rank).toBe(6); // 3, 3, 2, 1, 0.5 are above −1
    expect(result.logprob).toBeCloseTo(expected[1]!, 6);
    expect(result.top).toEqual([]);
  });

  it('returns null for rows that do not ask', () => {
    expect(new Sampler().sample({ logits, rows: [{ params: {}, history: history() }] }).logprobs).toEqual([null]);
  });
});

describe('Sampler: batches', () => {
  it('samples no rows from an empty batch', () => {
    const output = new Sampler().sample({ logits: new Float32Array(0), rows: [] });
    expect(output.tokenIds).toHaveLength(0);
  });

  it('refuses logits that do not split into the rows', () => {
    expect(() =>
      new Sampler().sample({ logits: new Float32Array(7), rows: [{ params: {}, history: history() }, { params: {}, history: history() }] }),
    ).toThrow(RangeError);
  });

  it('refuses a row in which every token is masked', () => {
    expect(() =>
      new Sampler().sample({ logits: new Float32Array([-Infinity, -Infinity]), rows: [{ params: { topK: 1 }, history: history() }] }),
    ).toThrow(/every logit is -Infinity/);
  });
});

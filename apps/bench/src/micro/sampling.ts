// The sampler on Qwen-sized rows (vocabulary 151,936) with temperature 0.8, top_p 0.9, top_k 50 and repetition,
// frequency and presence penalties over 200 history tokens: one row, one row with logprobs, a 64-row batch, and a
// straightforward full-sort implementation of the same pipeline as the baseline, timed in the same run. Before
// timing, both implementations draw from the same uniforms and must agree on the token.
//
// Usage: micro sampling [vocabSize] [batchRows]
import type { SamplingHistory, SamplingParams, SamplingRow } from '@pagoda/sampling';
import { Sampler, SeededGenerator } from '@pagoda/sampling';
import { timeMicroseconds } from './timing';

const PARAMS: SamplingParams = {
  temperature: 0.8,
  topP: 0.9,
  topK: 50,
  repetitionPenalty: 1.1,
  frequencyPenalty: 0.5,
  presencePenalty: 0.3,
};

export default async function samplingBenchmark(args: string[]): Promise<object> {
  const vocabSize = Number(args[0] ?? 151_936);
  const batchRows = Number(args[1] ?? 64);
  const generator = new SeededGenerator(2024);
  const batchLogits = new Float32Array(vocabSize * batchRows);
  for (let index = 0; index < batchLogits.length; index += 1) batchLogits[index] = modelLikeLogit(generator);
  const histories = Array.from({ length: batchRows }, () => randomHistory(generator, vocabSize));
  const row = batchLogits.subarray(0, vocabSize);
  const history = histories[0]!;

  const agreement = compareWithBaseline(row, history, 500);

  const sampler = new Sampler();
  const oneRow = { logits: row, rows: [{ params: { ...PARAMS, seed: 7 }, history }] };
  const oneRowWithLogprobs = { logits: row, rows: [{ params: { ...PARAMS, seed: 7, logprobs: 5 }, history }] };
  const batchRowsInput: SamplingRow[] = histories.map((rowHistory, index) => ({
    params: { ...PARAMS, seed: index },
    history: rowHistory,
  }));
  const batch = { logits: batchLogits, rows: batchRowsInput };

  const ours = timeMicroseconds(() => sampler.sample(oneRow), { iterations: 300, warmup: 30 });
  const oursWithLogprobs = timeMicroseconds(() => sampler.sample(oneRowWithLogprobs), { iterations: 100 });
  const fullSort = timeMicroseconds(() => fullSortSample(row, PARAMS, history, 0.5), {
    iterations: 15,
    warmup: 3,
  });
  const oursBatch = timeMicroseconds(() => sampler.sample(batch), { iterations: 30, warmup: 3 });

  return {
    vocabSize,
    historyTokens: history.promptTokenIds.length + history.outputTokenIds.length,
    params: PARAMS,
    agreementWithFullSort: agreement,
    perRow: {
      oursMs: ours.medianUs / 1000,
      oursWithLogprobs5Ms: oursWithLogprobs.medianUs / 1000,
      fullSortMs: fullSort.medianUs / 1000,
      speedup: fullSort.medianUs / ours.medianUs,
    },
    batch: { rows: batchRows, oursMs: oursBatch.medianUs / 1000, perRowMs: oursBatch.medianUs / 1000 / batchRows },
    raw: { ours, oursWithLogprobs, fullSort, oursBatch },
  };
}

/**
 * The straightforward pipeline: copy the row, penalize through a Set and a Map, scale and softmax the whole row,
 * sort every token by probability, cut at top_k and top_p, renormalize, walk the cumulative sum.
 */
function fullSortSample(logits: Float32Array, params: SamplingParams, history: SamplingHistory, uniform: number) {
  const values = Array.from(logits);
  const repetitionPenalty = params.repetitionPenalty ?? 1;
  const seen = new Set([...Array.from(history.promptTokenIds), ...Array.from(history.outputTokenIds)]);
  for (const tokenId of seen) {
    const value = values[tokenId]!;
    values[tokenId] = value > 0 ? value / repetitionPenalty : value * repetitionPenalty;
  }
  const counts = new Map<number, number>();
  for (const tokenId of Array.from(history.outputTokenIds)) counts.set(tokenId, (counts.get(tokenId) ?? 0) + 1);
  for (const [tokenId, count] of counts) {
    values[tokenId] = values[tokenId]! - count * (params.frequencyPenalty ?? 0) - (params.presencePenalty ?? 0);
  }
  const temperature = params.temperature ?? 1;
  const scaled = values.map((value) => value / temperature);
  const max = scaled.reduce((largest, value) => (value > largest ? value : largest), -Infinity);
  const exps = scaled.map((value) => Math.exp(value - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  const probabilities = exps.map((value) => value / sum);
  const order = probabilities.map((_, index) => index);
  order.sort((left, right) => probabilities[right]! - probabilities[left]! || left - right);
  const topK = params.topK ?? 0;
  const kept = topK > 0 ? order.slice(0, topK) : order;
  // top_k ties: tokens equal to the k-th are kept as well.
  if (topK > 0) {
    const kth = probabilities[kept[kept.length - 1]!]!;
    for (let index = topK; index < order.length && probabilities[order[index]!] === kth; index += 1) {
      kept.push(order[index]!);
    }
  }
  const keptMass = kept.reduce((total, tokenId) => total + probabilities[tokenId]!, 0);
  const topP = params.topP ?? 1;
  const nucleus: number[] = [];
  let mass = 0;
  for (const tokenId of kept) {
    if (mass >= topP * keptMass) break;
    nucleus.push(tokenId);
    mass += probabilities[tokenId]!;
  }
  const target = uniform * mass;
  let cumulative = 0;
  for (const tokenId of nucleus) {
    cumulative += probabilities[tokenId]!;
    if (target < cumulative) return tokenId;
  }
  return nucleus[nucleus.length - 1]!;
}

function compareWithBaseline(row: Float32Array, history: SamplingHistory, draws: number) {
  let agree = 0;
  const distinct = new Set<number>();
  for (let draw = 0; draw < draws; draw += 1) {
    const uniform = (draw + 0.5) / draws;
    const sampler = new Sampler({ random: () => uniform });
    const ours = sampler.sample({ logits: row, rows: [{ params: PARAMS, history }] }).tokenIds[0]!;
    const baseline = fullSortSample(row, PARAMS, history, uniform);
    if (ours === baseline) agree += 1;
    distinct.add(ours);
  }
  return { draws, agree, distinctTokens: distinct.size };
}

/**
 * A logit shaped like a language model's: a broad normal body, and a thin tail of strong candidates (about 75 per
 * row), so that top_p 0.9 keeps a few dozen tokens and top_k 50 binds.
 */
function modelLikeLogit(generator: SeededGenerator): number {
  const normal =
    Math.sqrt(-2 * Math.log(1 - generator.nextFloat())) * Math.cos(2 * Math.PI * generator.nextFloat());
  return generator.nextFloat() < 0.0005 ? 12 + 1.5 * normal : 2.5 * normal;
}

function randomHistory(generator: SeededGenerator, vocabSize: number): SamplingHistory {
  // Text repeats itself: draw ids from a small pool so that the penalties meet repeated ids.
  const pool = Array.from({ length: 120 }, () => generator.nextUint32() % vocabSize);
  const pick = () => pool[generator.nextUint32() % pool.length]!;
  return {
    promptTokenIds: Array.from({ length: 150 }, pick),
    outputTokenIds: Array.from({ length: 50 }, pick),
  };
}

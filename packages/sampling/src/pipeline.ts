import type { SamplingHistory, SamplingParams, TokenBitmask } from './sampling-params';
import { GREEDY_TEMPERATURE } from './sampling-params';
import { maxOf } from './softmax';
import type { TopKBuffers } from './top-k';
import { createTopKBuffers, selectTopK } from './top-k';

/*
 * The sampling pipeline of one logits row, in vLLM's order:
 *
 *   raw row ─► 0 allowed tokens    a grammar's bitmask: tokens whose bit is clear → -∞ (only rows that have one;
 *                                  vLLM applies it to the logits before the sampler, so logprobs see it too)
 *           ─► 1 logit_bias        l[id] += bias (clamped to [-100, 100])            ┐ sparse: only the ids that
 *           ─► 2 min_tokens        EOS and stop ids → -∞ while output < min_tokens   │ the bias, the stop ids or
 *           ─► 3 repetition        prompt ∪ output ids, once each: l > 0 ? l/r : l·r │ the history name are
 *           ─► 4 frequency/presence output ids: l − count·f − (count > 0 ? p : 0)    ┘ written, in a copy of the row
 *           ─► 5 temperature       l / T   (T < 1e-5: greedy, the argmax of 1–4, and nothing below applies)
 *           ─► 6 min_p             drop p < min_p · p_max, i.e. l/T < l_max/T + ln(min_p)
 *           ─► 7 top_k             drop l < the k-th largest (ties with it are kept)
 *           ─► 8 top_p             sort by p; keep the shortest prefix whose mass reaches top_p (≥ 1 token)
 *
 * Steps 5–7 commute as masks: temperature is monotonic and min_p and top_k are thresholds on the same order, so they
 * are computed as one selection on the unscaled row (a single pass with a k-sized heap when top_k is on) and only
 * the survivors are scaled, exponentiated and sorted for top_p. Without top_k, a histogram of probability mass by
 * distance from the maximum finds how far down top_p reaches, and only that part of the row is sorted. Nothing
 * touches the whole row more than once or twice, and nothing is exponentiated twice.
 */

/** Reusable buffers for rows of one vocabulary size; large ones are made on first use. */
export class SamplingWorkspace {
  readonly vocabSize: number;
  candidateIds: Int32Array;
  candidateWeights: Float64Array;
  candidateScaled: Float64Array;
  readonly topK: TopKBuffers = createTopKBuffers();
  readonly binMass = new Float64Array(HISTOGRAM_BINS);
  private workRow: Float32Array | null = null;
  private seenStamps: Uint32Array | null = null;
  private seenEpoch = 0;
  private outputCounts: Uint32Array | null = null;
  private allWeights: Float64Array | null = null;
  private maskedRow: Float32Array | null = null;

  constructor(vocabSize: number) {
    this.vocabSize = vocabSize;
    this.candidateIds = new Int32Array(256);
    this.candidateWeights = new Float64Array(256);
    this.candidateScaled = new Float64Array(256);
  }

  ensureCandidateCapacity(count: number): void {
    if (this.candidateIds.length >= count) return;
    const capacity = Math.max(count, this.candidateIds.length * 2);
    const ids = new Int32Array(capacity);
    ids.set(this.candidateIds);
    this.candidateIds = ids;
    this.candidateWeights = new Float64Array(capacity);
    this.candidateScaled = new Float64Array(capacity);
  }

  work(): Float32Array {
    return (this.workRow ??= new Float32Array(this.vocabSize));
  }

  /** A stamp value no id carries yet: `stamps[id] === epoch` marks an id as seen in this pass. */
  nextSeenEpoch(): { stamps: Uint32Array; epoch: number } {
    this.seenStamps ??= new Uint32Array(this.vocabSize);
    this.seenEpoch += 1;
    if (this.seenEpoch === 2 ** 32) {
      this.seenStamps.fill(0);
      this.seenEpoch = 1;
    }
    return { stamps: this.seenStamps, epoch: this.seenEpoch };
  }

  /** Per-id counters, all zero between uses (users reset what they increment). */
  counts(): Uint32Array {
    return (this.outputCounts ??= new Uint32Array(this.vocabSize));
  }

  /** The row after step 0, kept apart from {@link work} because logprobs read it after steps 1–4 wrote theirs. */
  masked(): Float32Array {
    return (this.maskedRow ??= new Float32Array(this.vocabSize));
  }

  rowWeights(): Float64Array {
    return (this.allWeights ??= new Float64Array(this.vocabSize));
  }
}

/** The distribution left after steps 1–8. */
export type Truncation =
  /** Every token keeps its probability: weights are exp((l − max) / T) over the whole adjusted row. */
  | { readonly keepsAll: true; readonly temperature: number }
  /**
   * `count` candidates in the workspace (`candidateIds`, unnormalized `candidateWeights` = exp((l − max) / T),
   * `candidateScaled` = l / T); with top_p, the ones it kept (by weight, descending, apart from the leading tokens of
   * whole histogram bins above the cut); `total` is the weights' sum.
   */
  | { readonly keepsAll: false; readonly temperature: number; readonly count: number; readonly total: number };

const HISTOGRAM_BINS_PER_NAT = 8;
const HISTOGRAM_BINS = HISTOGRAM_BINS_PER_NAT * 64;
const LOGIT_BIAS_LIMIT = 100;

export function isGreedy(params: SamplingParams): boolean {
  return (params.temperature ?? 1) < GREEDY_TEMPERATURE;
}

/**
 * Step 0: `out` gets `logits` with every token the bitmask does not allow at -Infinity, ids past the mask's end
 * included. Whole words are copied or filled at once: a grammar's masks are mostly all-set or all-clear words.
 */
export function applyTokenBitmask(logits: Float32Array, bitmask: TokenBitmask, out: Float32Array): Float32Array {
  const vocabSize = logits.length;
  for (let start = 0, word = 0; start < vocabSize; start += 32, word += 1) {
    const bits = word < bitmask.length ? bitmask[word]! : 0;
    const end = Math.min(start + 32, vocabSize);
    if (bits === 0) {
      out.fill(-Infinity, start, end);
    } else if (bits === -1) {
      for (let index = start; index < end; index += 1) out[index] = logits[index]!;
    } else {
      for (let index = start; index < end; index += 1) out[index] = (bits >>> (index - start)) & 1 ? logits[index]! : -Infinity;
    }
  }
  return out;
}

/**
 * Steps 1–4. Returns `logits` itself when no step has anything to do, and otherwise the workspace's copy of it with
 * the adjustments written in: the caller's row is never modified.
 */
export function adjustRow(
  logits: Float32Array,
  params: SamplingParams,
  history: SamplingHistory,
  workspace: SamplingWorkspace,
): Float32Array {
  const vocabSize = logits.length;
  const logitBias = params.logitBias;
  const hasBias = logitBias != null && hasOwnKeys(logitBias);
  const masksStops = history.outputTokenIds.length < (params.minTokens ?? 0);
  const repetitionPenalty = params.repetitionPenalty ?? 1;
  const penalizesRepetition =
    repetitionPenalty !== 1 && history.promptTokenIds.length + history.outputTokenIds.length > 0;
  const frequencyPenalty = params.frequencyPenalty ?? 0;
  const presencePenalty = params.presencePenalty ?? 0;
  const penalizesOutput = (frequencyPenalty !== 0 || presencePenalty !== 0) && history.outputTokenIds.length > 0;
  if (!hasBias && !masksStops && !penalizesRepetition && !penalizesOutput) return logits;

  const row = workspace.work();
  row.set(logits);

  if (hasBias) {
    for (const key of Object.keys(logitBias)) {
      const tokenId = Number(key);
      const bias = logitBias[tokenId]!;
      if (isTokenId(tokenId, vocabSize) && !Number.isNaN(bias)) {
        row[tokenId] = row[tokenId]! + Math.min(LOGIT_BIAS_LIMIT, Math.max(-LOGIT_BIAS_LIMIT, bias));
      }
    }
  }

  if (masksStops) {
    maskIds(row, params.stopTokenIds);
    if (params.ignoreEos !== true && history.eosTokenIds !== undefined) maskIds(row, history.eosTokenIds);
  }

  if (penalizesRepetition) {
    const { stamps, epoch } = workspace.nextSeenEpoch();
    for (const ids of [history.promptTokenIds, history.outputTokenIds]) {
      for (let index = 0; index < ids.length; index += 1) {
        const tokenId = ids[index]!;
        if (!isTokenId(tokenId, vocabSize) || stamps[tokenId] === epoch) continue;
        stamps[tokenId] = epoch;
        const logit = row[tokenId]!;
        row[tokenId] = logit > 0 ? logit / repetitionPenalty : logit * repetitionPenalty;
      }
    }
  }

  if (penalizesOutput) {
    const counts = workspace.counts();
    const output = history.outputTokenIds;
    for (let index = 0; index < output.length; index += 1) {
      const tokenId = output[index]!;
      if (isTokenId(tokenId, vocabSize)) counts[tokenId] = counts[tokenId]! + 1;
    }
    for (let index = 0; index < output.length; index += 1) {
      const tokenId = output[index]!;
      if (!isTokenId(tokenId, vocabSize)) continue;
      const count = counts[tokenId]!;
      if (count === 0) continue; // already penalized: a repeated id
      row[tokenId] = row[tokenId]! - count * frequencyPenalty - presencePenalty;
      counts[tokenId] = 0;
    }
  }
  return row;
}

/** The greedy token: the first index of the row's maximum (NaN never wins; a row of only -Infinity throws). */
export function argmax(row: Float32Array): number {
  // Four lanes, each with its own running maximum, so no comparison waits on the one before it; then the lanes'
  // winners are merged, the first index winning ties. NaN never compares greater.
  const length = row.length;
  let max0 = -Infinity;
  let max1 = -Infinity;
  let max2 = -Infinity;
  let max3 = -Infinity;
  let best0 = -1;
  let best1 = -1;
  let best2 = -1;
  let best3 = -1;
  let index = 0;
  for (; index + 3 < length; index += 4) {
    const value0 = row[index]!;
    const value1 = row[index + 1]!;
    const value2 = row[index + 2]!;
    const value3 = row[index + 3]!;
    if (value0 > max0) {
      max0 = value0;
      best0 = index;
    }
    if (value1 > max1) {
      max1 = value1;
      best1 = index + 1;
    }
    if (value2 > max2) {
      max2 = value2;
      best2 = index + 2;
    }
    if (value3 > max3) {
      max3 = value3;
      best3 = index + 3;
    }
  }
  for (; index < length; index += 1) {
    if (row[index]! > max0) {
      max0 = row[index]!;
      best0 = index;
    }
  }
  let best = best0;
  let max = max0;
  const merge = (laneMax: number, laneBest: number): void => {
    if (laneMax > max || (laneMax === max && laneBest !== -1 && laneBest < best)) {
      max = laneMax;
      best = laneBest;
    }
  };
  merge(max1, best1);
  merge(max2, best2);
  merge(max3, best3);
  if (best < 0) throw new RangeError('every logit is -Infinity: no token can be sampled');
  return best;
}

/** Steps 5–8 over an adjusted row (the output of {@link adjustRow}); the row is only read. */
export function truncate(row: Float32Array, params: SamplingParams, workspace: SamplingWorkspace): Truncation {
  const temperature = params.temperature ?? 1;
  const minP = params.minP ?? 0;
  const topP = params.topP ?? 1;
  const requestedTopK = params.topK ?? 0;
  const topK = requestedTopK > 0 && requestedTopK < row.length ? requestedTopK : 0;

  if (topK > 0) {
    const selected = selectTopK(row, topK, workspace.topK, true);
    workspace.ensureCandidateCapacity(selected);
    workspace.candidateIds.set(workspace.topK.ids.subarray(0, selected));
    return finishCandidates(row, selected, temperature, minP, topP, null, workspace);
  }
  if (minP <= 0 && topP >= 1) {
    maxOf(row); // an all-masked row is refused here as in the other branches
    return { keepsAll: true, temperature };
  }
  const max = maxOf(row);
  if (topP >= 1) {
    const slack = 1e-6 * (1 + Math.abs(max) + Math.abs(temperature * Math.log(minP)));
    const count = collectAtLeast(row, max + temperature * Math.log(minP) - slack, workspace);
    return finishCandidates(row, count, temperature, minP, topP, null, workspace);
  }
  // top_p over the whole row: bin the probability mass by distance below the maximum (one exp per token), find the
  // bin where the mass reaches top_p, and sort only the tokens above it.
  const binMass = workspace.binMass;
  binMass.fill(0);
  let normalizer = 0;
  const lastBin = HISTOGRAM_BINS - 1;
  for (let index = 0; index < row.length; index += 1) {
    const weight = Math.exp((row[index]! - max) / temperature);
    if (!(weight >= minP && weight > 0)) continue;
    normalizer += weight;
    const bin = ((max - row[index]!) / temperature) * HISTOGRAM_BINS_PER_NAT;
    const binIndex = bin < lastBin ? Math.floor(bin) : lastBin;
    binMass[binIndex] = binMass[binIndex]! + weight;
  }
  // Bins entirely above the cut are kept whole (their tokens need no sorting); the cut falls in the next bin or two.
  const target = topP * normalizer;
  let sureBins = 0;
  let reached = lastBin;
  let cumulative = 0;
  for (let bin = 0; bin < lastBin; bin += 1) {
    cumulative += binMass[bin]!;
    if (cumulative < target * (1 - 1e-9)) sureBins = bin + 1;
    if (cumulative >= target * (1 + 1e-9)) {
      reached = bin;
      break;
    }
  }
  // One bin of margin keeps rounding at bin edges from leaving a nucleus token out; the exact cut comes after.
  const cutoff = reached === lastBin ? -Infinity : max - (temperature * (reached + 2)) / HISTOGRAM_BINS_PER_NAT;
  const count = collectAtLeast(row, cutoff, workspace);
  return finishCandidates(row, count, temperature, minP, topP, { normalizer, sureBins }, workspace);
}

/** Ids of the finite entries >= `threshold`, into the workspace's candidates; returns how many. */
function collectAtLeast(row: Float32Array, threshold: number, workspace: SamplingWorkspace): number {
  let count = 0;
  for (let index = 0; index < row.length; index += 1) {
    const value = row[index]!;
    if (value >= threshold && value > -Infinity) {
      if (count === workspace.candidateIds.length) workspace.ensureCandidateCapacity(count + 1);
      workspace.candidateIds[count] = index;
      count += 1;
    }
  }
  return count;
}

/**
 * Scales and weighs the selected candidates, applies min_p exactly, then top_p (sorting by weight). Without
 * `histogram`, top_p's mass is the candidates' own (they are every survivor of min_p and top_k); with it, the mass
 * is the whole row's, and the candidates in its first `sureBins` bins, all above the cut, skip the sort.
 */
function finishCandidates(
  row: Float32Array,
  selected: number,
  temperature: number,
  minP: number,
  topP: number,
  histogram: { normalizer: number; sureBins: number } | null,
  workspace: SamplingWorkspace,
): Truncation {
  const ids = workspace.candidateIds;
  const weights = workspace.candidateWeights;
  const scaled = workspace.candidateScaled;
  let max = -Infinity;
  for (let index = 0; index < selected; index += 1) {
    const value = row[ids[index]!]!;
    if (value > max) max = value;
  }
  if (max === -Infinity) throw new RangeError('every logit is -Infinity: no token can be sampled');
  let count = 0;
  let total = 0;
  for (let index = 0; index < selected; index += 1) {
    const tokenId = ids[index]!;
    const value = row[tokenId]!;
    const weight = Math.exp((value - max) / temperature);
    if (!(weight >= minP && weight > 0)) continue;
    ids[count] = tokenId;
    weights[count] = weight;
    scaled[count] = value / temperature;
    total += weight;
    count += 1;
  }
  if (topP >= 1) return { keepsAll: false, temperature, count, total };

  let sure = 0;
  let mass = 0;
  if (histogram !== null && histogram.sureBins > 0) {
    const sureBins = histogram.sureBins;
    for (let index = 0; index < count; index += 1) {
      const bin = ((max - row[ids[index]!]!) / temperature) * HISTOGRAM_BINS_PER_NAT;
      if (bin >= sureBins) continue;
      swapCandidates(ids, weights, scaled, index, sure);
      mass += weights[sure]!;
      sure += 1;
    }
  }
  sortByWeightDescending(ids, weights, scaled, sure, count);
  const limit = topP * (histogram?.normalizer ?? total);
  let kept = sure;
  while (kept < count && mass < limit) {
    mass += weights[kept]!;
    kept += 1;
  }
  return { keepsAll: false, temperature, count: kept, total: mass };
}

function swapCandidates(ids: Int32Array, weights: Float64Array, scaled: Float64Array, left: number, right: number) {
  if (left === right) return;
  const tokenId = ids[left]!;
  const weight = weights[left]!;
  const value = scaled[left]!;
  ids[left] = ids[right]!;
  weights[left] = weights[right]!;
  scaled[left] = scaled[right]!;
  ids[right] = tokenId;
  weights[right] = weight;
  scaled[right] = value;
}

/** Sorts candidates [start, end) by weight, descending, lower id first among equals (a deterministic order). */
function sortByWeightDescending(
  ids: Int32Array,
  weights: Float64Array,
  scaled: Float64Array,
  start: number,
  end: number,
): void {
  if (end - start <= 48) {
    for (let index = start + 1; index < end; index += 1) {
      const tokenId = ids[index]!;
      const weight = weights[index]!;
      const value = scaled[index]!;
      let position = index - 1;
      while (position >= start && comesBefore(weight, tokenId, weights[position]!, ids[position]!)) {
        ids[position + 1] = ids[position]!;
        weights[position + 1] = weights[position]!;
        scaled[position + 1] = scaled[position]!;
        position -= 1;
      }
      ids[position + 1] = tokenId;
      weights[position + 1] = weight;
      scaled[position + 1] = value;
    }
    return;
  }
  const order = Array.from({ length: end - start }, (_, index) => start + index);
  order.sort((left, right) => weights[right]! - weights[left]! || ids[left]! - ids[right]!);
  const sortedIds = order.map((index) => ids[index]!);
  const sortedWeights = order.map((index) => weights[index]!);
  const sortedScaled = order.map((index) => scaled[index]!);
  ids.set(sortedIds, start);
  weights.set(sortedWeights, start);
  scaled.set(sortedScaled, start);
}

function comesBefore(weight: number, tokenId: number, otherWeight: number, otherTokenId: number): boolean {
  return weight > otherWeight || (weight === otherWeight && tokenId < otherTokenId);
}

/** Draws a token from a truncation with a uniform number in [0, 1). */
export function drawToken(
  row: Float32Array,
  truncation: Truncation,
  uniform: number,
  workspace: SamplingWorkspace,
): number {
  if (!truncation.keepsAll) {
    const { count, total } = truncation;
    const ids = workspace.candidateIds;
    const weights = workspace.candidateWeights;
    const target = uniform * total;
    let cumulative = 0;
    for (let index = 0; index < count; index += 1) {
      cumulative += weights[index]!;
      if (target < cumulative) return ids[index]!;
    }
    return ids[count - 1]!; // rounding left the target at the very top of the total
  }
  const { temperature } = truncation;
  const max = maxOf(row);
  const weights = workspace.rowWeights();
  let total = 0;
  for (let index = 0; index < row.length; index += 1) {
    const weight = Math.exp((row[index]! - max) / temperature);
    const kept = weight > 0 ? weight : 0; // NaN logits weigh nothing
    weights[index] = kept;
    total += kept;
  }
  const target = uniform * total;
  let cumulative = 0;
  let last = -1;
  for (let index = 0; index < row.length; index += 1) {
    const weight = weights[index]!;
    if (weight === 0) continue;
    cumulative += weight;
    last = index;
    if (target < cumulative) return index;
  }
  return last;
}

function hasOwnKeys(object: object): boolean {
  for (const key in object) {
    if (Object.hasOwn(object, key)) return true;
  }
  return false;
}

function isTokenId(tokenId: number, vocabSize: number): boolean {
  return Number.isInteger(tokenId) && tokenId >= 0 && tokenId < vocabSize;
}

function maskIds(row: Float32Array, ids: ArrayLike<number> | null | undefined): void {
  if (ids == null) return;
  for (let index = 0; index < ids.length; index += 1) {
    const tokenId = ids[index]!;
    if (isTokenId(tokenId, row.length)) row[tokenId] = -Infinity;
  }
}

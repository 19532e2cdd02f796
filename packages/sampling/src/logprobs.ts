import type { TopKBuffers } from './top-k';
import { createTopKBuffers, selectTopK } from './top-k';

/** A token and its log-probability under the model's distribution. */
export interface TokenLogprob {
  readonly tokenId: number;
  readonly logprob: number;
}

/** The sampled token's logprob, its rank and the most likely tokens, all from the model's raw distribution. */
export interface SampledTokenLogprobs {
  readonly tokenId: number;
  readonly logprob: number;
  /** 1 + the number of tokens strictly more likely than the sampled one (vLLM's rank). */
  readonly rank: number;
  /** The `logprobs` most likely tokens, most likely first (lower id first among equals). */
  readonly top: readonly TokenLogprob[];
}

/**
 * Logprobs of the raw row (vLLM's default `raw_logprobs`: before penalties, temperature and truncation), so they
 * describe the model, not the sampling settings; a grammar's allowed-token bitmask is already in the row, as in vLLM,
 * which masks the logits before sampling. Two passes over the row, only for rows that ask.
 */
export function rawLogprobs(
  row: Float32Array,
  tokenId: number,
  topCount: number,
  buffers: TopKBuffers,
): SampledTokenLogprobs {
  // Pass 1: the top entries (at least one, which gives the maximum). Pass 2: the sum of exponentials and the rank.
  const selected = selectTopK(row, Math.max(1, topCount), buffers, false);
  const topIds = Array.from(buffers.ids.subarray(0, selected));
  topIds.sort((left, right) => row[right]! - row[left]! || left - right);
  const max = row[topIds[0]!]!;
  if (!(max > -Infinity)) throw new RangeError('every logit is -Infinity: no token can be sampled');
  const sampledLogit = row[tokenId]!;
  let sum = 0;
  let moreLikely = 0;
  for (let index = 0; index < row.length; index += 1) {
    const value = row[index]!;
    sum += Math.exp(value - max);
    if (value > sampledLogit) moreLikely += 1;
  }
  const logSumExp = max + Math.log(sum);
  const top: TokenLogprob[] = topCount === 0 ? [] : topIds.map((id) => ({ tokenId: id, logprob: row[id]! - logSumExp }));
  return { tokenId, logprob: sampledLogit - logSumExp, rank: moreLikely + 1, top };
}

let sharedBuffers: TopKBuffers | undefined;

/**
 * The logprob, rank and top logprobs of `tokenId` under one raw logits row, as for a sampled token: what vLLM's
 * `prompt_logprobs` reports for each prompt token, from the row of the position before it.
 */
export function tokenLogprobs(row: Float32Array, tokenId: number, topCount: number): SampledTokenLogprobs {
  sharedBuffers ??= createTopKBuffers();
  return rawLogprobs(row, tokenId, topCount, sharedBuffers);
}

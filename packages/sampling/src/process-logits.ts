import type { SamplingHistory, SamplingParams, TokenBitmask } from './sampling-params';
import { SamplingWorkspace, adjustRow, applyTokenBitmask, argmax, isGreedy, truncate } from './pipeline';

/**
 * One row through the whole sampling pipeline (see `pipeline.ts` for the order: allowed tokens → logit_bias → min_tokens →
 * repetition → frequency/presence → temperature → min_p → top_k → top_p), returned as a row of processed logits:
 * kept tokens hold their logit after penalties and temperature, masked ones -Infinity, so its softmax is the
 * distribution the {@link Sampler} draws from. A greedy row (temperature below 1e-5) keeps only its argmax.
 *
 * `params` are used as given (missing fields take the defaults): validate a client's parameters once, with
 * `validateSamplingParams`, where they enter. `logits` is not modified; `out` (which may be `logits` itself)
 * receives the result. `allowedTokenBitmask`, when given, masks every token it does not allow, first. This allocates
 * scratch space per call; the Sampler reuses its own.
 */
export function processLogits(
  logits: Float32Array,
  params: SamplingParams,
  history: SamplingHistory,
  out: Float32Array = new Float32Array(logits.length),
  allowedTokenBitmask: TokenBitmask | null = null,
): Float32Array {
  if (out.length !== logits.length) {
    throw new RangeError(`out has ${out.length} entries, logits ${logits.length}`);
  }
  const workspace = new SamplingWorkspace(logits.length);
  const raw = allowedTokenBitmask === null ? logits : applyTokenBitmask(logits, allowedTokenBitmask, workspace.masked());
  const row = adjustRow(raw, params, history, workspace);
  if (isGreedy(params)) {
    const tokenId = argmax(row);
    const value = row[tokenId]!;
    out.fill(-Infinity);
    out[tokenId] = value;
    return out;
  }
  const truncation = truncate(row, params, workspace);
  if (truncation.keepsAll) {
    for (let index = 0; index < row.length; index += 1) out[index] = row[index]! / truncation.temperature;
    return out;
  }
  out.fill(-Infinity);
  for (let index = 0; index < truncation.count; index += 1) {
    out[workspace.candidateIds[index]!] = workspace.candidateScaled[index]!;
  }
  return out;
}

/**
 * Numerically stable softmax and log-softmax over one logits row. Entries equal to -Infinity (masked tokens) get
 * probability 0 (log-probability -Infinity). A row whose entries are all -Infinity is a broken invariant: some
 * processor masked every token.
 */
export function logSoftmax(logits: Float32Array, out: Float32Array = new Float32Array(logits.length)): Float32Array {
  const logSumExp = logSumExpOf(logits);
  for (let index = 0; index < logits.length; index += 1) {
    out[index] = logits[index]! - logSumExp;
  }
  return out;
}

export function softmax(logits: Float32Array, out: Float32Array = new Float32Array(logits.length)): Float32Array {
  const max = maxOf(logits);
  let sum = 0;
  for (let index = 0; index < logits.length; index += 1) {
    const value = Math.exp(logits[index]! - max);
    out[index] = value;
    sum += value;
  }
  const scale = 1 / sum;
  for (let index = 0; index < logits.length; index += 1) {
    out[index] = out[index]! * scale;
  }
  return out;
}

/** log(sum(exp(logits))), computed in float64 around the maximum. */
export function logSumExpOf(logits: Float32Array): number {
  const max = maxOf(logits);
  let sum = 0;
  for (let index = 0; index < logits.length; index += 1) {
    sum += Math.exp(logits[index]! - max);
  }
  return max + Math.log(sum);
}

/** The largest entry of a row; throws when every entry is -Infinity (or NaN): no token could be sampled. */
export function maxOf(logits: Float32Array): number {
  let max = -Infinity;
  for (let index = 0; index < logits.length; index += 1) {
    if (logits[index]! > max) max = logits[index]!;
  }
  if (max === -Infinity) {
    throw new RangeError('every logit is -Infinity: no token can be sampled');
  }
  return max;
}

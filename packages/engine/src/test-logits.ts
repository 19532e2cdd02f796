import { expect } from 'vitest';

/** The index of the largest value (the first one among equals). */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let id = 1; id < values.length; id += 1) if (values[id]! > values[best]!) best = id;
  return best;
}

/** The largest absolute difference between two rows of the same length. */
export function maxDifference(left: Float32Array, right: Float32Array): number {
  expect(left.length).toBe(right.length);
  let max = 0;
  for (let index = 0; index < left.length; index += 1) max = Math.max(max, Math.abs(left[index]! - right[index]!));
  return max;
}

import { expect } from 'vitest';

/** The index of the largest value (the first one among equals): the sampler's own. */
export { argmax } from '@pagoda/sampling';

/** The largest absolute difference between two rows of the same length. */
export function maxDifference(left: Float32Array, right: Float32Array): number {
  expect(left.length).toBe(right.length);
  let max = 0;
  for (let index = 0; index < left.length; index += 1) max = Math.max(max, Math.abs(left[index]! - right[index]!));
  return max;
}

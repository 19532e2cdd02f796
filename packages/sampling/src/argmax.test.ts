import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { argmax } from './pipeline';

/** The plain definition: the first index holding the largest value; NaN never wins. */
function firstLargest(row: Float32Array): number {
  let best = -1;
  for (let index = 0; index < row.length; index += 1) if (best === -1 ? row[index]! > -Infinity : row[index]! > row[best]!) best = index;
  if (best === -1) throw new RangeError('every logit is -Infinity');
  return best;
}

describe('argmax', () => {
  it('agrees with the plain definition on any row: ties, NaN, infinities, every length', () => {
    const value = fc.oneof(
      fc.constantFrom(0, 1, -1, 2.5, Number.NaN, Infinity, -Infinity),
      fc.float({ noDefaultInfinity: true }),
    );
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 40 }), (values) => {
        const row = Float32Array.from(values);
        let expected: number | Error;
        try {
          expected = firstLargest(row);
        } catch (error) {
          expected = error as Error;
        }
        if (expected instanceof Error) expect(() => argmax(row)).toThrow(/every logit is -Infinity/);
        else expect(argmax(row)).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('finds the first of equal maxima wherever they fall in the four lanes', () => {
    for (let first = 0; first < 9; first += 1) {
      const row = new Float32Array(11).fill(-3);
      row[first] = 7;
      row[first + 2] = 7;
      expect(argmax(row)).toBe(first);
    }
  });
});

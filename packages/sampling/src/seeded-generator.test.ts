import { describe, expect, it } from 'vitest';
import { SeededGenerator } from './index';

describe('SeededGenerator (xoshiro128**)', () => {
  it('produces the reference outputs of xoshiro128** from the state {1, 2, 3, 4}', () => {
    // Computed with the reference C algorithm (Blackman and Vigna) transcribed to Python.
    const generator = SeededGenerator.fromState([1, 2, 3, 4]);
    const outputs = Array.from({ length: 6 }, () => generator.nextUint32());
    expect(outputs).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
  });

  it('repeats a sequence for the same seed and stream, and differs across seeds and streams', () => {
    const sequence = (seed: number, stream?: number) => {
      const generator = new SeededGenerator(seed, stream);
      return Array.from({ length: 8 }, () => generator.nextUint32());
    };
    expect(sequence(42)).toEqual(sequence(42));
    expect(sequence(42)).not.toEqual(sequence(43));
    expect(sequence(42, 1)).not.toEqual(sequence(42, 2));
    expect(sequence(2 ** 40)).not.toEqual(sequence(0));
    expect(sequence(-1)).not.toEqual(sequence(2 ** 32 - 1));
  });

  it('gives doubles in [0, 1) whose mean and first-output bits look uniform across nearby seeds', () => {
    let sum = 0;
    let highBits = 0;
    for (let seed = 0; seed < 10_000; seed += 1) {
      const generator = new SeededGenerator(seed);
      const value = generator.nextFloat();
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(1);
      sum += value;
      if (value >= 0.5) highBits += 1;
    }
    expect(Math.abs(sum / 10_000 - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(highBits - 5000)).toBeLessThan(200);
  });

  it('refuses a seed that is not a safe integer', () => {
    expect(() => new SeededGenerator(0.5)).toThrow(RangeError);
    expect(() => SeededGenerator.fromState([0, 0, 0, 0])).toThrow(RangeError);
  });
});

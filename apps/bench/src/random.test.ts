import { describe, expect, it } from 'vitest';
import { Random } from './random';

const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
const variance = (values: number[]) => {
  const average = mean(values);
  return mean(values.map((value) => (value - average) ** 2));
};

describe('Random', () => {
  it('repeats its sequence for the same seed and differs for another', () => {
    const draw = (seed: number) => {
      const random = new Random(seed);
      return Array.from({ length: 8 }, () => random.nextUint32());
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
  });

  it('draws uniform floats in [0, 1) and integers in [low, high)', () => {
    const random = new Random(1);
    const floats = Array.from({ length: 20000 }, () => random.uniform());
    expect(Math.min(...floats)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...floats)).toBeLessThan(1);
    expect(mean(floats)).toBeCloseTo(0.5, 1);
    const integers = Array.from({ length: 20000 }, () => random.integer(3, 7));
    expect(new Set(integers)).toEqual(new Set([3, 4, 5, 6]));
  });

  it.each([
    [0.5, 2],
    [1, 0.25],
    [4, 0.1],
  ])('draws gamma(shape %f, scale %f) with mean kθ and variance kθ²', (shape, scale) => {
    const random = new Random(42);
    const draws = Array.from({ length: 40000 }, () => random.gamma(shape, scale));
    expect(Math.min(...draws)).toBeGreaterThan(0);
    expect(mean(draws) / (shape * scale)).toBeCloseTo(1, 1);
    expect(variance(draws) / (shape * scale * scale)).toBeGreaterThan(0.9);
    expect(variance(draws) / (shape * scale * scale)).toBeLessThan(1.1);
  });
});

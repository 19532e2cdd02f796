import { describe, expect, it } from 'vitest';
import { Random } from '../random';
import { arrivalTimes } from './arrivals';

const gaps = (times: number[]) => times.slice(1).map((time, index) => time - times[index]!);
const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
const coefficientOfVariation = (values: number[]) => {
  const average = mean(values);
  return Math.sqrt(mean(values.map((value) => (value - average) ** 2))) / average;
};

describe('arrivalTimes', () => {
  it('starts at 0 and is non-decreasing', () => {
    const times = arrivalTimes(100, 10, 1, new Random(0));
    expect(times[0]).toBe(0);
    for (const gap of gaps(times)) expect(gap).toBeGreaterThanOrEqual(0);
  });

  it('is the same for the same seed and differs for another', () => {
    expect(arrivalTimes(20, 5, 1, new Random(3))).toEqual(arrivalTimes(20, 5, 1, new Random(3)));
    expect(arrivalTimes(20, 5, 1, new Random(3))).not.toEqual(arrivalTimes(20, 5, 1, new Random(4)));
  });

  it('sends everything at once at an infinite rate', () => {
    expect(arrivalTimes(5, Infinity, 1, new Random(0))).toEqual([0, 0, 0, 0, 0]);
  });

  it('paces Poisson arrivals at the requested rate with exponential gaps (coefficient of variation 1)', () => {
    const times = arrivalTimes(20001, 8, 1, new Random(11));
    expect(mean(gaps(times))).toBeCloseTo(1 / 8, 2);
    expect(coefficientOfVariation(gaps(times))).toBeCloseTo(1, 1);
  });

  it('keeps the rate but changes the spread with burstiness (CV = 1/sqrt(burstiness))', () => {
    const bursty = gaps(arrivalTimes(20001, 8, 0.25, new Random(5)));
    const even = gaps(arrivalTimes(20001, 8, 4, new Random(5)));
    expect(mean(bursty)).toBeCloseTo(1 / 8, 2);
    expect(mean(even)).toBeCloseTo(1 / 8, 2);
    expect(coefficientOfVariation(bursty)).toBeCloseTo(2, 1);
    expect(coefficientOfVariation(even)).toBeCloseTo(0.5, 1);
  });

  it('rejects a rate or burstiness that is not positive', () => {
    expect(() => arrivalTimes(3, 0, 1, new Random(0))).toThrow(/request-rate/);
    expect(() => arrivalTimes(3, 1, 0, new Random(0))).toThrow(/burstiness/);
  });
});

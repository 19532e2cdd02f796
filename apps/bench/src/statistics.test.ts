import { describe, expect, it } from 'vitest';
import { percentile, summarize } from './statistics';

describe('summarize', () => {
  it("matches numpy's linear-interpolation percentiles", () => {
    // numpy.percentile([1, 2, 3, 4], [50, 90, 99]) == [2.5, 3.7, 3.97]
    const summary = summarize([4, 1, 3, 2], [90, 99]);
    expect(summary.median).toBeCloseTo(2.5, 12);
    expect(summary.percentiles['90']).toBeCloseTo(3.7, 12);
    expect(summary.percentiles['99']).toBeCloseTo(3.97, 12);
    expect(summary.mean).toBe(2.5);
    expect(summary.std).toBeCloseTo(Math.sqrt(1.25), 12);
  });

  it('reports zeros for an empty sample, as vLLM does when no request completed', () => {
    expect(summarize([], [99])).toEqual({ mean: 0, median: 0, std: 0, percentiles: { '99': 0 } });
  });

  it('refuses a percentile outside [0, 100]', () => {
    expect(() => percentile([1], 101)).toThrow('percentile must be in [0, 100], got 101');
  });
});

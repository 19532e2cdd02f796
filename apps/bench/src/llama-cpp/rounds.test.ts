import { describe, expect, it } from 'vitest';
import { pagodaRunsFirst, summarizeRounds } from './rounds';

const run = (rate: number, label: string) => ({ decode_tokens_per_s: rate, label });

describe('summarizeRounds', () => {
  it('takes the ratio within each round, then its median, and the median run of each engine', () => {
    // Round 2 ran on a busy machine: both engines slowed, and its ratio is still in line with round 1's.
    const summary = summarizeRounds([run(100, 'p1'), run(50, 'p2'), run(120, 'p3')], [run(50, 'l1'), run(20, 'l2'), run(40, 'l3')]);
    expect(summary.decodeRatios).toEqual([2, 2.5, 3]);
    expect(summary.decodeRatio).toBe(2.5);
    expect(summary.decodeRatioRange).toEqual([2, 3]);
    expect(summary.pagoda.label).toBe('p1');
    expect(summary.llamaCpp.label).toBe('l3');
  });

  it('interpolates the median ratio of an even count and picks the lower middle run', () => {
    const summary = summarizeRounds([run(10, 'p1'), run(30, 'p2')], [run(10, 'l1'), run(10, 'l2')]);
    expect(summary.decodeRatio).toBe(2);
    expect(summary.pagoda.label).toBe('p1');
  });

  it('is the single pair itself for one round', () => {
    const summary = summarizeRounds([run(30, 'p')], [run(20, 'l')]);
    expect(summary).toMatchObject({ decodeRatio: 1.5, decodeRatioRange: [1.5, 1.5], pagoda: { label: 'p' }, llamaCpp: { label: 'l' } });
  });

  it('refuses unpaired runs', () => {
    expect(() => summarizeRounds([run(1, 'p')], [])).toThrow('paired rounds need as many runs of each engine, at least one: got 1 and 0');
  });
});

describe('pagodaRunsFirst', () => {
  it('alternates which engine runs first', () => {
    expect([0, 1, 2, 3].map(pagodaRunsFirst)).toEqual([true, false, true, false]);
  });
});

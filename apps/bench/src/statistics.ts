/** Summary statistics of a sample, as `vllm bench serve` reports them (numpy's linear-interpolation percentiles). */
export interface Summary {
  mean: number;
  median: number;
  std: number;
  percentiles: Record<string, number>;
}

/**
 * The p-th percentile (0..100) of `sorted` (ascending), interpolating linearly between the two nearest ranks as
 * numpy's default does.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${p}`);
  const rank = (p / 100) * (sorted.length - 1);
  const lower = Math.floor(rank);
  const upper = Math.ceil(rank);
  const weight = rank - lower;
  return sorted[lower]! * (1 - weight) + sorted[upper]! * weight;
}

/** Mean, median, population standard deviation and the requested percentiles; zeros for an empty sample. */
export function summarize(values: readonly number[], percentiles: readonly number[] = [99]): Summary {
  const sorted = [...values].sort((left, right) => left - right);
  const mean = sorted.length === 0 ? 0 : sorted.reduce((sum, value) => sum + value, 0) / sorted.length;
  const variance =
    sorted.length === 0 ? 0 : sorted.reduce((sum, value) => sum + (value - mean) ** 2, 0) / sorted.length;
  return {
    mean,
    median: percentile(sorted, 50),
    std: Math.sqrt(variance),
    percentiles: Object.fromEntries(percentiles.map((p) => [String(p), percentile(sorted, p)])),
  };
}

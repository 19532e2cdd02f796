/** Times `body` over `iterations` runs after `warmup` runs; returns per-run statistics in microseconds. */
export function timeMicroseconds(
  body: () => void,
  { iterations = 100, warmup = 10 }: { iterations?: number; warmup?: number } = {},
): { meanUs: number; medianUs: number; minUs: number; iterations: number } {
  for (let index = 0; index < warmup; index += 1) body();
  const samples = new Float64Array(iterations);
  for (let index = 0; index < iterations; index += 1) {
    const start = process.hrtime.bigint();
    body();
    samples[index] = Number(process.hrtime.bigint() - start) / 1000;
  }
  const sorted = [...samples].sort((left, right) => left - right);
  const total = sorted.reduce((sum, value) => sum + value, 0);
  return {
    meanUs: total / iterations,
    medianUs: sorted[Math.floor(iterations / 2)]!,
    minUs: sorted[0]!,
    iterations,
  };
}

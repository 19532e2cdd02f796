import type { Random } from '../random';

/**
 * When each request is sent, in seconds after the benchmark starts, as `vllm bench serve` paces them: the first at 0,
 * then gaps drawn from a gamma distribution with shape `burstiness` and mean `1 / requestRate`. Burstiness 1 is a
 * Poisson process (exponential gaps); below 1 the arrivals come in bursts, above 1 they are more even. An infinite
 * rate sends everything at once.
 *
 * ```
 * rate 4/s, burstiness 1:   |x  x x     x x  x   x|   gaps ~ Exp(mean 0.25 s)
 * rate 4/s, burstiness 10:  |x  x  x  x  x  x  x |   gaps ~ Gamma(10, 0.025 s)
 * ```
 */
export function arrivalTimes(count: number, requestRate: number, burstiness: number, random: Random): number[] {
  if (!(requestRate > 0)) throw new RangeError(`--request-rate must be positive (or inf), got ${requestRate}`);
  if (!(burstiness > 0) || !Number.isFinite(burstiness)) throw new RangeError(`--burstiness must be a positive number, got ${burstiness}`);
  const times = new Array<number>(count);
  let time = 0;
  const scale = 1 / (requestRate * burstiness);
  for (let index = 0; index < count; index++) {
    times[index] = time;
    if (Number.isFinite(requestRate)) time += random.gamma(burstiness, scale);
  }
  return times;
}

import { percentile } from '../statistics';

/**
 * Whether Pagoda runs first in round `round` (0-based) of a stream count: it alternates, so that a machine getting
 * busier or quieter over the measurement favours neither engine (A B, B A, A B, ...).
 */
export function pagodaRunsFirst(round: number): boolean {
  return round % 2 === 0;
}

/** The runs of one stream count, one per engine per round, each round's two runs one right after the other. */
export interface PairedRounds<Run extends { readonly decode_tokens_per_s: number }> {
  /** The run with the median decode rate (the lower middle one for an even count), per engine. */
  readonly pagoda: Run;
  readonly llamaCpp: Run;
  /** The median over rounds of Pagoda / llama.cpp within the round, and its range. */
  readonly decodeRatio: number;
  readonly decodeRatioRange: readonly [number, number];
  readonly decodeRatios: readonly number[];
}

function medianRun<Run extends { readonly decode_tokens_per_s: number }>(runs: readonly Run[]): Run {
  const sorted = [...runs].sort((left, right) => left.decode_tokens_per_s - right.decode_tokens_per_s);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/**
 * Sums up `rounds` of paired runs. The ratio is taken within each round, whose two runs saw the same machine, and
 * then its median over rounds: on a shared machine a ratio of medians taken at different moments says less.
 */
export function summarizeRounds<Run extends { readonly decode_tokens_per_s: number }>(
  pagoda: readonly Run[],
  llamaCpp: readonly Run[],
): PairedRounds<Run> {
  if (pagoda.length === 0 || pagoda.length !== llamaCpp.length) {
    throw new RangeError(`paired rounds need as many runs of each engine, at least one: got ${pagoda.length} and ${llamaCpp.length}`);
  }
  const decodeRatios = pagoda.map((run, round) => run.decode_tokens_per_s / llamaCpp[round]!.decode_tokens_per_s);
  const sorted = [...decodeRatios].sort((left, right) => left - right);
  return {
    pagoda: medianRun(pagoda),
    llamaCpp: medianRun(llamaCpp),
    decodeRatio: percentile(sorted, 50),
    decodeRatioRange: [sorted[0]!, sorted.at(-1)!],
    decodeRatios,
  };
}

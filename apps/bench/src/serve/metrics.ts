import { summarize } from '../statistics';
import type { RequestResult } from './client';

/** The metrics `--percentile-metrics` may name. */
export const metricNames = ['ttft', 'tpot', 'itl', 'e2el'] as const;
export type MetricName = (typeof metricNames)[number];

const metricTitles: Record<MetricName, { header: string; short: string }> = {
  ttft: { header: 'Time to First Token', short: 'TTFT' },
  tpot: { header: 'Time per Output Token (excl. 1st token)', short: 'TPOT' },
  itl: { header: 'Inter-token Latency', short: 'ITL' },
  e2el: { header: 'End-to-end Latency', short: 'E2EL' },
};

/** Service-level objectives for goodput, in milliseconds, as `--goodput ttft:200 tpot:50`. */
export type GoodputSlos = Partial<Record<'ttft' | 'tpot' | 'e2el', number>>;

export interface MetricSummary {
  readonly mean: number;
  readonly median: number;
  readonly std: number;
  /** [percentile, value] pairs in the order asked for. */
  readonly percentiles: ReadonlyArray<readonly [number, number]>;
}

/** What `vllm bench serve` computes from the requests' results; latencies in milliseconds. */
export interface BenchmarkMetrics {
  readonly completed: number;
  readonly failed: number;
  readonly totalInput: number;
  readonly totalOutput: number;
  readonly requestThroughput: number;
  readonly requestGoodput: number | undefined;
  readonly outputThroughput: number;
  readonly totalTokenThroughput: number;
  /** The most output tokens (chunks) that arrived in any one-second window of the run. */
  readonly maxOutputTokensPerSecond: number;
  /** The most requests in flight at once. */
  readonly maxConcurrentRequests: number;
  readonly outputLengths: readonly number[];
  readonly summaries: Readonly<Record<MetricName, MetricSummary>>;
}

export interface MetricOptions {
  /** 0..100, e.g. [50, 90, 99]. */
  readonly percentiles: readonly number[];
  readonly goodput?: GoodputSlos;
  /** Counts a request's output tokens when the server sent no usage (default: its chunk count). */
  readonly countTokens?: (result: RequestResult) => number;
}

/**
 * Aggregates results as vLLM's `calculate_metrics`: output tokens from the server's usage (else counted), TPOT =
 * (latency − TTFT) / (output − 1) for requests with more than one token, every ITL of every request pooled, goodput
 * counting requests that meet all the given SLOs (a single-token request's TPOT counts as 0). Failed requests count
 * only as failed.
 */
export function computeMetrics(results: readonly RequestResult[], durationSeconds: number, options: MetricOptions): BenchmarkMetrics {
  const countTokens = options.countTokens ?? ((result: RequestResult) => result.chunkCount);
  const ttfts: number[] = [];
  const tpots: number[] = [];
  const tpotsForGoodput: number[] = [];
  const itls: number[] = [];
  const e2els: number[] = [];
  const outputLengths: number[] = [];
  let completed = 0;
  let totalInput = 0;
  for (const result of results) {
    if (!result.success) {
      outputLengths.push(0);
      continue;
    }
    const outputLength = result.outputTokens ?? countTokens(result);
    outputLengths.push(outputLength);
    totalInput += result.promptLength;
    let tpot = 0;
    if (outputLength > 1) {
      tpot = (result.latency - result.ttft) / (outputLength - 1);
      tpots.push(tpot);
    }
    tpotsForGoodput.push(tpot);
    itls.push(...result.itl);
    ttfts.push(result.ttft);
    e2els.push(result.latency);
    completed++;
  }
  let requestGoodput: number | undefined;
  const goodput = options.goodput ?? {};
  const slos = (
    [
      ['ttft', ttfts],
      ['tpot', tpotsForGoodput],
      ['e2el', e2els],
    ] as const
  ).filter(([name]) => goodput[name] !== undefined);
  if (slos.length > 0) {
    let good = 0;
    for (let index = 0; index < ttfts.length; index++) {
      if (slos.every(([name, values]) => values[index]! * 1000 <= goodput[name]!)) good++;
    }
    requestGoodput = good / durationSeconds;
  }
  const totalOutput = outputLengths.reduce((sum, length) => sum + length, 0);
  const toSummary = (seconds: readonly number[]): MetricSummary => {
    const summary = summarize(
      seconds.map((value) => value * 1000),
      options.percentiles,
    );
    return {
      mean: summary.mean,
      median: summary.median,
      std: summary.std,
      percentiles: options.percentiles.map((p) => [p, summary.percentiles[String(p)]!] as const),
    };
  };
  return {
    completed,
    failed: results.length - completed,
    totalInput,
    totalOutput,
    requestThroughput: completed / durationSeconds,
    requestGoodput,
    outputThroughput: totalOutput / durationSeconds,
    totalTokenThroughput: (totalInput + totalOutput) / durationSeconds,
    maxOutputTokensPerSecond: peakTokensPerSecond(results),
    maxConcurrentRequests: peakConcurrency(results),
    outputLengths,
    summaries: { ttft: toSummary(ttfts), tpot: toSummary(tpots), itl: toSummary(itls), e2el: toSummary(e2els) },
  };
}

/** Chunk arrivals per whole second of the run (second k holds arrivals in [k, k+1)); the largest count. */
function peakTokensPerSecond(results: readonly RequestResult[]): number {
  const perSecond = new Map<number, number>();
  for (const result of results) {
    if (!result.success) continue;
    let time = result.startTime + result.ttft;
    const add = () => perSecond.set(Math.floor(time), (perSecond.get(Math.floor(time)) ?? 0) + 1);
    add();
    for (const gap of result.itl) {
      time += gap;
      add();
    }
  }
  return Math.max(0, ...perSecond.values());
}

/** The most requests between send and last chunk at any instant (an end before a start at the same time). */
function peakConcurrency(results: readonly RequestResult[]): number {
  const events: Array<[number, number]> = [];
  for (const result of results) {
    events.push([result.startTime, 1], [result.startTime + result.latency, -1]);
  }
  events.sort((left, right) => left[0] - right[0] || left[1] - right[1]);
  let current = 0;
  let peak = 0;
  for (const [, delta] of events) {
    current += delta;
    peak = Math.max(peak, current);
  }
  return peak;
}

/** `p99`, `p99.9`: how vLLM names a percentile in its result keys. */
export function percentileKey(p: number): string {
  return `p${String(p)}`;
}

/** The metric part of `--save-result`'s JSON, with vLLM's key names. */
export function metricsRecord(metrics: BenchmarkMetrics, durationSeconds: number, selected: readonly MetricName[]): Record<string, unknown> {
  const record: Record<string, unknown> = {
    duration: durationSeconds,
    completed: metrics.completed,
    failed: metrics.failed,
    total_input_tokens: metrics.totalInput,
    total_output_tokens: metrics.totalOutput,
    request_throughput: metrics.requestThroughput,
    request_goodput: metrics.requestGoodput ?? null,
    output_throughput: metrics.outputThroughput,
    total_token_throughput: metrics.totalTokenThroughput,
    max_output_tokens_per_s: metrics.maxOutputTokensPerSecond,
    max_concurrent_requests: metrics.maxConcurrentRequests,
  };
  for (const name of selected) {
    const summary = metrics.summaries[name];
    record[`mean_${name}_ms`] = summary.mean;
    record[`median_${name}_ms`] = summary.median;
    record[`std_${name}_ms`] = summary.std;
    for (const [p, value] of summary.percentiles) record[`${percentileKey(p)}_${name}_ms`] = value;
  }
  return record;
}

/** The console table, laid out as `vllm bench serve` prints it (50 columns, labels padded to 40). */
export function formatMetricsTable(
  metrics: BenchmarkMetrics,
  durationSeconds: number,
  selected: readonly MetricName[],
  maxConcurrency: number | undefined,
): string {
  const lines: string[] = [];
  const title = (text: string, fill: string) => {
    const padding = 50 - text.length;
    const left = Math.floor(padding / 2);
    lines.push(fill.repeat(Math.max(0, left)) + text + fill.repeat(Math.max(0, padding - left)));
  };
  const row = (label: string, value: number | string, decimals?: number) => {
    const text = typeof value === 'number' && decimals !== undefined ? value.toFixed(decimals) : String(value);
    lines.push(`${label.padEnd(40)} ${text.padEnd(10)}`.trimEnd());
  };
  title(' Serving Benchmark Result ', '=');
  row('Successful requests:', metrics.completed);
  row('Failed requests:', metrics.failed);
  if (maxConcurrency !== undefined) row('Maximum request concurrency:', maxConcurrency);
  row('Benchmark duration (s):', durationSeconds, 2);
  row('Total input tokens:', metrics.totalInput);
  row('Total generated tokens:', metrics.totalOutput);
  row('Request throughput (req/s):', metrics.requestThroughput, 2);
  if (metrics.requestGoodput !== undefined) row('Request goodput (req/s):', metrics.requestGoodput, 2);
  row('Output token throughput (tok/s):', metrics.outputThroughput, 2);
  row('Peak output token throughput (tok/s):', metrics.maxOutputTokensPerSecond, 2);
  row('Peak concurrent requests:', metrics.maxConcurrentRequests, 2);
  row('Total Token throughput (tok/s):', metrics.totalTokenThroughput, 2);
  for (const name of selected) {
    const summary = metrics.summaries[name];
    const { header, short } = metricTitles[name];
    title(header, '-');
    row(`Mean ${short} (ms):`, summary.mean, 2);
    row(`Median ${short} (ms):`, summary.median, 2);
    for (const [p, value] of summary.percentiles) row(`P${p} ${short} (ms):`, value, 2);
  }
  lines.push('='.repeat(50));
  return lines.join('\n');
}

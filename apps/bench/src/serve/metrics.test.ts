import { describe, expect, it } from 'vitest';
import type { RequestResult } from './client';
import { computeMetrics, formatMetricsTable, metricsRecord } from './metrics';

function result(fields: Partial<RequestResult>): RequestResult {
  return {
    success: true,
    promptLength: 0,
    outputTokens: undefined,
    chunkCount: 0,
    generatedText: '',
    startTime: 0,
    ttft: 0,
    itl: [],
    latency: 0,
    error: '',
    ...fields,
  };
}

// Two completed requests and one failed one over a 1-second run:
//   first:  sent at 0.0, 10 prompt tokens, usage says 5 output tokens, TTFT 0.1, four gaps of 0.05, done at 0.3
//   second: sent at 0.2, 20 prompt tokens, no usage, 3 chunks, TTFT 0.3, two gaps of 0.1, done 0.5 after its send
const results = [
  result({ promptLength: 10, outputTokens: 5, chunkCount: 5, ttft: 0.1, itl: [0.05, 0.05, 0.05, 0.05], latency: 0.3 }),
  result({ promptLength: 20, chunkCount: 3, startTime: 0.2, ttft: 0.3, itl: [0.1, 0.1], latency: 0.5 }),
  result({ success: false, promptLength: 99, error: 'HTTP 500' }),
];

describe('computeMetrics', () => {
  const metrics = computeMetrics(results, 1, { percentiles: [50, 99] });

  it('counts completed and failed requests and the tokens of the completed ones only', () => {
    expect(metrics.completed).toBe(2);
    expect(metrics.failed).toBe(1);
    expect(metrics.totalInput).toBe(30);
    // usage where the server sent it (5), the chunk count where it did not (3); 0 for the failure
    expect(metrics.outputLengths).toEqual([5, 3, 0]);
    expect(metrics.totalOutput).toBe(8);
  });

  it('divides by the duration for request and token throughput', () => {
    const slower = computeMetrics(results, 2, { percentiles: [99] });
    expect(slower.requestThroughput).toBe(1);
    expect(slower.outputThroughput).toBe(4);
    expect(slower.totalTokenThroughput).toBe(19);
  });

  it('summarizes TTFT and end-to-end latency in milliseconds', () => {
    expect(metrics.summaries.ttft.mean).toBeCloseTo(200, 9);
    expect(metrics.summaries.ttft.median).toBeCloseTo(200, 9);
    expect(metrics.summaries.ttft.std).toBeCloseTo(100, 9);
    expect(metrics.summaries.ttft.percentiles).toEqual([
      [50, expect.closeTo(200, 9)],
      [99, expect.closeTo(298, 9)],
    ]);
    expect(metrics.summaries.e2el.mean).toBeCloseTo(400, 9);
  });

  it('computes TPOT as (latency − TTFT) / (output tokens − 1) per request', () => {
    expect(metrics.summaries.tpot.mean).toBeCloseTo(75, 9); // 50 ms and 100 ms
    expect(metrics.summaries.tpot.percentiles[0]).toEqual([50, expect.closeTo(75, 9)]);
  });

  it('pools every inter-token latency of every request', () => {
    expect(metrics.summaries.itl.mean).toBeCloseTo(400 / 6, 9);
    expect(metrics.summaries.itl.median).toBeCloseTo(50, 9);
    expect(metrics.summaries.itl.percentiles[1]).toEqual([99, expect.closeTo(100, 9)]);
  });

  it('leaves a single-token request out of TPOT but counts it as 0 ms for goodput', () => {
    const single = [result({ outputTokens: 1, chunkCount: 1, ttft: 0.05, latency: 0.05 })];
    const summary = computeMetrics(single, 1, { percentiles: [99], goodput: { tpot: 0 } });
    expect(summary.summaries.tpot.mean).toBe(0);
    expect(summary.requestGoodput).toBe(1);
  });

  it('counts as good only requests meeting every SLO, the limit included', () => {
    expect(computeMetrics(results, 1, { percentiles: [99], goodput: { ttft: 200 } }).requestGoodput).toBe(1);
    expect(computeMetrics(results, 1, { percentiles: [99], goodput: { ttft: 400, tpot: 60 } }).requestGoodput).toBe(1);
    expect(computeMetrics(results, 2, { percentiles: [99], goodput: { tpot: 100.0001, e2el: 500.0001 } }).requestGoodput).toBe(1);
    expect(metrics.requestGoodput).toBeUndefined();
  });

  it('finds the peak concurrency and the peak output tokens in one second', () => {
    expect(metrics.maxConcurrentRequests).toBe(2);
    expect(metrics.maxOutputTokensPerSecond).toBe(8);
    const spread = [result({ chunkCount: 2, ttft: 0.5, itl: [1], latency: 1.5 }), result({ chunkCount: 1, startTime: 2, ttft: 0.1, latency: 0.1 })];
    const summary = computeMetrics(spread, 3, { percentiles: [99] });
    expect(summary.maxConcurrentRequests).toBe(1);
    expect(summary.maxOutputTokensPerSecond).toBe(1);
  });

  it('gives zeros, not NaN, when nothing completed', () => {
    const none = computeMetrics([result({ success: false })], 1, { percentiles: [99] });
    expect(none.summaries.ttft).toEqual({ mean: 0, median: 0, std: 0, percentiles: [[99, 0]] });
    expect(none.requestThroughput).toBe(0);
  });
});

describe('metricsRecord', () => {
  it("uses vLLM's key names, only for the selected metrics", () => {
    const record = metricsRecord(computeMetrics(results, 1, { percentiles: [99, 99.9] }), 1, ['ttft', 'itl']);
    expect(Object.keys(record)).toEqual(
      expect.arrayContaining([
        'duration',
        'completed',
        'failed',
        'total_input_tokens',
        'total_output_tokens',
        'request_throughput',
        'output_throughput',
        'total_token_throughput',
        'mean_ttft_ms',
        'median_ttft_ms',
        'std_ttft_ms',
        'p99_ttft_ms',
        'p99.9_ttft_ms',
        'median_itl_ms',
        'p99_itl_ms',
      ]),
    );
    expect(record).not.toHaveProperty('mean_tpot_ms');
    expect(record.completed).toBe(2);
    expect(record.p99_ttft_ms).toBeCloseTo(298, 9);
  });
});

describe('formatMetricsTable', () => {
  it("prints vLLM's table: 50-column rules, labels padded to 40, one section per metric", () => {
    const table = formatMetricsTable(computeMetrics(results, 1, { percentiles: [99], goodput: { ttft: 200 } }), 1, ['ttft', 'tpot'], 4);
    const lines = table.split('\n');
    expect(lines[0]).toBe('============ Serving Benchmark Result ============');
    expect(lines.at(-1)).toBe('='.repeat(50));
    expect(lines).toContain(`${'Successful requests:'.padEnd(40)} 2`);
    expect(lines).toContain(`${'Failed requests:'.padEnd(40)} 1`);
    expect(lines).toContain(`${'Maximum request concurrency:'.padEnd(40)} 4`);
    expect(lines).toContain(`${'Request goodput (req/s):'.padEnd(40)} 1.00`);
    expect(lines).toContain('---------------Time to First Token----------------');
    expect(lines).toContain(`${'P99 TTFT (ms):'.padEnd(40)} 298.00`);
    expect(lines).toContain(`${'Mean TPOT (ms):'.padEnd(40)} 75.00`);
    expect(table).not.toContain('ITL');
  });
});

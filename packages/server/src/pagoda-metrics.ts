import type { RequestOutput, SchedulerStats } from '@pagoda/engine';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

// vLLM's bucket edges, so dashboards built for vLLM read these histograms the same way.
const ttftBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const itlBuckets = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const e2eBuckets = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

/** vLLM's buckets for token counts per request: 1, 2, 5, 10, 20, 50, … up to the context length. */
function tokenBuckets(maxModelLen: number): number[] {
  const buckets: number[] = [];
  for (let exponent = 0; ; exponent += 1) {
    for (const mantissa of [1, 2, 5]) {
      const value = mantissa * 10 ** exponent;
      if (value > maxModelLen) return buckets;
      buckets.push(value);
    }
  }
}

export interface PagodaMetricsOptions {
  /**
   * Also export every series under vLLM's names (`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`, …) with
   * its labels (`model_name`, `engine`) and buckets, so vLLM's Grafana dashboards and the routers that schedule
   * vLLM replicas by them read a Pagoda server unchanged.
   */
  readonly vllmCompatible?: boolean;
  /** The context length, for the per-request token histograms' buckets (default 8192). */
  readonly maxModelLen?: number;
}

/** One family of the series: under a prefix, with constant labels. */
class MetricSet {
  readonly running: Gauge;
  readonly waiting: Gauge;
  readonly kvUsage: Gauge[];
  readonly preemptions: Counter;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly requestSuccess: Counter;
  readonly prefixQueries: Counter;
  readonly prefixHits: Counter;
  readonly ttft: Histogram;
  readonly itl: Histogram[];
  readonly e2e: Histogram;
  readonly requestPromptTokens: Histogram | undefined;
  readonly requestGenerationTokens: Histogram | undefined;

  constructor(
    registry: Registry,
    prefix: string,
    readonly labels: Readonly<Record<string, string>>,
    options: { maxModelLen: number; vllm: boolean },
  ) {
    const registers = [registry];
    const labelNames = Object.keys(labels);
    const gauge = (name: string, help: string) => new Gauge({ name: `${prefix}:${name}`, help, labelNames, registers });
    const counter = (name: string, help: string, extra: string[] = []) => new Counter({ name: `${prefix}:${name}`, help, labelNames: [...labelNames, ...extra], registers });
    const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name: `${prefix}:${name}`, help, buckets, labelNames, registers });
    this.running = gauge('num_requests_running', 'Requests running on the engine.');
    this.waiting = gauge('num_requests_waiting', 'Requests waiting to run.');
    this.kvUsage = [gauge('kv_cache_usage_perc', 'Fraction of KV cache blocks in use (1 = 100%).')];
    // vLLM's older name for the same gauge, which some routers still read.
    if (options.vllm) this.kvUsage.push(gauge('gpu_cache_usage_perc', 'Fraction of KV cache blocks in use (1 = 100%); kv_cache_usage_perc under its old name.'));
    this.preemptions = counter('num_preemptions_total', 'Requests preempted by the scheduler.');
    this.promptTokens = counter('prompt_tokens_total', 'Prompt tokens processed.');
    this.generationTokens = counter('generation_tokens_total', 'Tokens generated.');
    this.requestSuccess = counter('request_success_total', 'Requests finished, by finish reason.', ['finished_reason']);
    this.prefixQueries = counter('prefix_cache_queries_total', 'Prompt tokens looked up in the prefix cache.');
    this.prefixHits = counter('prefix_cache_hits_total', 'Prompt tokens found in the prefix cache.');
    this.ttft = histogram('time_to_first_token_seconds', 'Time to first token.', ttftBuckets);
    this.itl = [histogram('inter_token_latency_seconds', 'Time between consecutive output tokens.', itlBuckets)];
    if (options.vllm) this.itl.push(histogram('time_per_output_token_seconds', 'Time per output token (as vLLM: each gap between tokens).', itlBuckets));
    this.e2e = histogram('e2e_request_latency_seconds', 'Time from arrival to the last token.', e2eBuckets);
    const tokens = tokenBuckets(options.maxModelLen);
    this.requestPromptTokens = options.vllm ? histogram('request_prompt_tokens', 'Prompt tokens of each finished request.', tokens) : undefined;
    this.requestGenerationTokens = options.vllm ? histogram('request_generation_tokens', 'Generated tokens of each finished request.', tokens) : undefined;
    for (const reason of ['stop', 'length', 'abort']) this.requestSuccess.inc({ ...labels, finished_reason: reason }, 0);
    for (const metric of [this.preemptions, this.promptTokens, this.generationTokens, this.prefixQueries, this.prefixHits]) metric.inc(labels, 0);
  }
}

/**
 * The series vLLM users watch, under a `pagoda:` prefix (and, with `vllmCompatible`, under vLLM's `vllm:` names
 * too), fed from engine statistics and finished requests, on a prom-client registry of their own beside
 * prom-client's default process and Node.js metrics (`process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`).
 */
export class PagodaMetrics {
  readonly registry = new Registry();
  private readonly sets: MetricSet[];
  private lastStats: SchedulerStats | undefined;
  private promptTokenCount = 0;
  private generationTokenCount = 0;

  constructor(
    readonly modelName: string,
    options: PagodaMetricsOptions = {},
  ) {
    collectDefaultMetrics({ register: this.registry });
    const maxModelLen = options.maxModelLen ?? 8192;
    this.sets = [new MetricSet(this.registry, 'pagoda', {}, { maxModelLen, vllm: false })];
    if (options.vllmCompatible) this.sets.push(new MetricSet(this.registry, 'vllm', { model_name: modelName, engine: '0' }, { maxModelLen, vllm: true }));
  }

  /** Copies the engine's gauges and advances the counters by what changed since the last call. */
  updateFromStats(stats: SchedulerStats): void {
    const last = this.lastStats;
    for (const set of this.sets) {
      set.running.set(set.labels, stats.numRunningRequests);
      set.waiting.set(set.labels, stats.numWaitingRequests);
      for (const gauge of set.kvUsage) gauge.set(set.labels, stats.kvCacheUsage);
      set.preemptions.inc(set.labels, Math.max(0, stats.numPreemptionsTotal - (last?.numPreemptionsTotal ?? 0)));
      set.prefixQueries.inc(set.labels, Math.max(0, stats.prefixCacheQueries - (last?.prefixCacheQueries ?? 0)));
      set.prefixHits.inc(set.labels, Math.max(0, stats.prefixCacheHits - (last?.prefixCacheHits ?? 0)));
    }
    this.lastStats = stats;
  }

  /** Records a finished request. */
  recordFinished(output: RequestOutput): void {
    this.promptTokenCount += output.promptTokenIds.length;
    const generated = output.outputs.reduce((sum, completion) => sum + completion.tokenIds.length, 0);
    for (const set of this.sets) {
      set.promptTokens.inc(set.labels, output.promptTokenIds.length);
      for (const completion of output.outputs) set.requestSuccess.inc({ ...set.labels, finished_reason: completion.finishReason ?? 'abort' });
      set.requestPromptTokens?.observe(set.labels, output.promptTokenIds.length);
      set.requestGenerationTokens?.observe(set.labels, generated);
      const metrics = output.metrics;
      if (metrics === undefined) continue;
      if (metrics.timeToFirstToken !== undefined) set.ttft.observe(set.labels, metrics.timeToFirstToken);
      for (const gap of metrics.interTokenLatencies) for (const histogram of set.itl) histogram.observe(set.labels, gap);
      set.e2e.observe(set.labels, metrics.e2eLatency);
    }
  }

  /** Prompt tokens of finished requests and generated tokens so far, for the server's periodic log line. */
  totals(): { promptTokens: number; generationTokens: number } {
    return { promptTokens: this.promptTokenCount, generationTokens: this.generationTokenCount };
  }

  recordGenerated(tokens: number): void {
    this.generationTokenCount += tokens;
    for (const set of this.sets) set.generationTokens.inc(set.labels, tokens);
  }

  /** The Prometheus text exposition, with the engine's latest statistics. */
  async render(stats: SchedulerStats): Promise<string> {
    this.updateFromStats(stats);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

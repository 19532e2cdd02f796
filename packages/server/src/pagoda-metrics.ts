import type { RequestOutput, SchedulerStats } from '@pagoda/engine';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

// vLLM's bucket edges, so dashboards built for vLLM read these histograms the same way.
const ttftBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const itlBuckets = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const e2eBuckets = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

/**
 * The series vLLM users watch, under a `pagoda:` prefix, fed from engine statistics and finished requests, on a
 * prom-client registry of their own beside prom-client's default process and Node.js metrics
 * (`process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`, ...).
 */
export class PagodaMetrics {
  readonly registry = new Registry();
  private readonly running = new Gauge({ name: 'pagoda:num_requests_running', help: 'Requests running on the engine.', registers: [this.registry] });
  private readonly waiting = new Gauge({ name: 'pagoda:num_requests_waiting', help: 'Requests waiting to run.', registers: [this.registry] });
  private readonly kvUsage = new Gauge({ name: 'pagoda:kv_cache_usage_perc', help: 'Fraction of KV cache blocks in use (1 = 100%).', registers: [this.registry] });
  private readonly preemptions = new Counter({ name: 'pagoda:num_preemptions_total', help: 'Requests preempted by the scheduler.', registers: [this.registry] });
  private readonly promptTokens = new Counter({ name: 'pagoda:prompt_tokens_total', help: 'Prompt tokens processed.', registers: [this.registry] });
  private readonly generationTokens = new Counter({ name: 'pagoda:generation_tokens_total', help: 'Tokens generated.', registers: [this.registry] });
  private readonly requestSuccess = new Counter({
    name: 'pagoda:request_success_total',
    help: 'Requests finished, by finish reason.',
    labelNames: ['finished_reason'] as const,
    registers: [this.registry],
  });
  private readonly prefixQueries = new Counter({ name: 'pagoda:prefix_cache_queries_total', help: 'Prompt tokens looked up in the prefix cache.', registers: [this.registry] });
  private readonly prefixHits = new Counter({ name: 'pagoda:prefix_cache_hits_total', help: 'Prompt tokens found in the prefix cache.', registers: [this.registry] });
  private readonly ttft = new Histogram({ name: 'pagoda:time_to_first_token_seconds', help: 'Time to first token.', buckets: ttftBuckets, registers: [this.registry] });
  private readonly itl = new Histogram({ name: 'pagoda:inter_token_latency_seconds', help: 'Time between consecutive output tokens.', buckets: itlBuckets, registers: [this.registry] });
  private readonly e2e = new Histogram({ name: 'pagoda:e2e_request_latency_seconds', help: 'Time from arrival to the last token.', buckets: e2eBuckets, registers: [this.registry] });
  private lastStats: SchedulerStats | undefined;
  private promptTokenCount = 0;
  private generationTokenCount = 0;

  constructor(readonly modelName: string) {
    collectDefaultMetrics({ register: this.registry });
    for (const reason of ['stop', 'length', 'abort']) this.requestSuccess.inc({ finished_reason: reason }, 0);
  }

  /** Copies the engine's gauges and advances the counters by what changed since the last call. */
  updateFromStats(stats: SchedulerStats): void {
    this.running.set(stats.numRunningRequests);
    this.waiting.set(stats.numWaitingRequests);
    this.kvUsage.set(stats.kvCacheUsage);
    const last = this.lastStats;
    this.preemptions.inc(Math.max(0, stats.numPreemptionsTotal - (last?.numPreemptionsTotal ?? 0)));
    this.prefixQueries.inc(Math.max(0, stats.prefixCacheQueries - (last?.prefixCacheQueries ?? 0)));
    this.prefixHits.inc(Math.max(0, stats.prefixCacheHits - (last?.prefixCacheHits ?? 0)));
    this.lastStats = stats;
  }

  /** Records a finished request. */
  recordFinished(output: RequestOutput): void {
    this.promptTokens.inc(output.promptTokenIds.length);
    this.promptTokenCount += output.promptTokenIds.length;
    for (const completion of output.outputs) this.requestSuccess.inc({ finished_reason: completion.finishReason ?? 'abort' });
    const metrics = output.metrics;
    if (metrics === undefined) return;
    if (metrics.timeToFirstToken !== undefined) this.ttft.observe(metrics.timeToFirstToken);
    for (const gap of metrics.interTokenLatencies) this.itl.observe(gap);
    this.e2e.observe(metrics.e2eLatency);
  }

  /** Prompt tokens of finished requests and generated tokens so far, for the server's periodic log line. */
  totals(): { promptTokens: number; generationTokens: number } {
    return { promptTokens: this.promptTokenCount, generationTokens: this.generationTokenCount };
  }

  recordGenerated(tokens: number): void {
    this.generationTokenCount += tokens;
    this.generationTokens.inc(tokens);
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

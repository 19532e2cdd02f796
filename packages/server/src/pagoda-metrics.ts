import type { RequestOutput, SchedulerStats } from '@pagoda/engine';
import { Counter, Gauge, Histogram, Registry } from './metrics';

// vLLM's bucket edges, so dashboards built for vLLM read these histograms the same way.
const ttftBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const itlBuckets = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const e2eBuckets = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

/** The series vLLM users watch, under a `pagoda:` prefix, fed from engine statistics and finished requests. */
export class PagodaMetrics {
  readonly registry = new Registry();
  private readonly running = this.registry.register(new Gauge('pagoda:num_requests_running', 'Requests running on the engine.'));
  private readonly waiting = this.registry.register(new Gauge('pagoda:num_requests_waiting', 'Requests waiting to run.'));
  private readonly kvUsage = this.registry.register(new Gauge('pagoda:kv_cache_usage_perc', 'Fraction of KV cache blocks in use (1 = 100%).'));
  private readonly preemptions = this.registry.register(new Counter('pagoda:num_preemptions_total', 'Requests preempted by the scheduler.'));
  private readonly promptTokens = this.registry.register(new Counter('pagoda:prompt_tokens_total', 'Prompt tokens processed.'));
  private readonly generationTokens = this.registry.register(new Counter('pagoda:generation_tokens_total', 'Tokens generated.'));
  private readonly requestSuccess = this.registry.register(new Counter('pagoda:request_success_total', 'Requests finished, by finish reason.'));
  private readonly prefixQueries = this.registry.register(new Counter('pagoda:prefix_cache_queries_total', 'Prompt tokens looked up in the prefix cache.'));
  private readonly prefixHits = this.registry.register(new Counter('pagoda:prefix_cache_hits_total', 'Prompt tokens found in the prefix cache.'));
  private readonly ttft = this.registry.register(new Histogram('pagoda:time_to_first_token_seconds', 'Time to first token.', ttftBuckets));
  private readonly itl = this.registry.register(new Histogram('pagoda:inter_token_latency_seconds', 'Time between consecutive output tokens.', itlBuckets));
  private readonly e2e = this.registry.register(new Histogram('pagoda:e2e_request_latency_seconds', 'Time from arrival to the last token.', e2eBuckets));
  private lastStats: SchedulerStats | undefined;
  private promptTokenCount = 0;
  private generationTokenCount = 0;

  constructor(readonly modelName: string) {
    for (const reason of ['stop', 'length', 'abort']) this.requestSuccess.touch({ finished_reason: reason });
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
    for (const completion of output.outputs) {
      this.requestSuccess.inc(1, { finished_reason: completion.finishReason ?? 'abort' });
    }
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

  render(stats: SchedulerStats): string {
    this.updateFromStats(stats);
    return this.registry.render();
  }
}

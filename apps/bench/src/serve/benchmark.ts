import { ProgressBar, type ProgressStream } from '../progress-bar';
import { Random } from '../random';
import { arrivalTimes } from './arrivals';
import { type CompletionClientOptions, monotonicSeconds, type RequestResult, sendCompletionRequest } from './client';
import type { BenchmarkRequest } from './datasets';

export interface ServeRunOptions {
  readonly requests: readonly BenchmarkRequest[];
  readonly client: CompletionClientOptions;
  /** Requests per second; `Infinity` sends them all at once. */
  readonly requestRate: number;
  readonly burstiness: number;
  /** The most requests in flight; undefined for no limit. */
  readonly maxConcurrency: number | undefined;
  readonly seed: number;
  /** Where the progress bar draws (only on a TTY); undefined for none. */
  readonly progress?: ProgressStream | undefined;
  readonly now?: () => number;
  readonly sleep?: (seconds: number) => Promise<void>;
}

export interface ServeRunResult {
  readonly results: RequestResult[];
  readonly durationSeconds: number;
}

const realSleep = (seconds: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, seconds * 1000)));

/**
 * The load generator: request i is sent at its arrival time (Poisson or gamma, seeded) or, under `maxConcurrency`,
 * as soon after that as a slot frees up (arrivals never wait for slots, as in vLLM: the queue forms in the client).
 * The duration runs from the first send to the last response.
 */
export async function runServeBenchmark(options: ServeRunOptions): Promise<ServeRunResult> {
  const now = options.client.now ?? options.now ?? monotonicSeconds;
  const sleep = options.sleep ?? realSleep;
  const client = { ...options.client, now };
  const { requests, maxConcurrency } = options;
  if (maxConcurrency !== undefined && !(Number.isInteger(maxConcurrency) && maxConcurrency >= 1)) {
    throw new RangeError(`--max-concurrency must be a positive integer, got ${maxConcurrency}`);
  }
  const arrivals = arrivalTimes(requests.length, options.requestRate, options.burstiness, new Random(options.seed));
  const progress = new ProgressBar('requests', requests.length, options.progress);
  const semaphore = new Semaphore(maxConcurrency ?? Infinity);
  const start = now();
  const pending: Array<Promise<RequestResult>> = [];
  for (let index = 0; index < requests.length; index++) {
    const wait = start + arrivals[index]! - now();
    if (wait > 0) await sleep(wait);
    pending.push(
      (async () => {
        await semaphore.acquire();
        try {
          return await sendCompletionRequest(requests[index]!, client, start);
        } finally {
          semaphore.release();
          progress.tick();
        }
      })(),
    );
  }
  const results = await Promise.all(pending);
  const durationSeconds = now() - start;
  progress.finish();
  return { results, durationSeconds };
}

/** A counting semaphore whose waiters are served in order. */
class Semaphore {
  private readonly waiters: Array<() => void> = [];
  private available: number;

  constructor(permits: number) {
    this.available = permits;
  }

  acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.available++;
  }
}

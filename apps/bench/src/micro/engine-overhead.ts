// The engine core's own cost per step, without a model: scheduling, block bookkeeping, greedy sampling over a
// 49,152-token vocabulary (SmolLM2's) and the update, with an executor that hands back ready logits at once. On a GPU
// the model's step is a few milliseconds, so this host-side cost caps decode throughput: tokens/s here are the most
// any device could give at each concurrency (before HTTP and detokenization, which run in another thread).
//   micro engine-overhead [concurrencies=1,8,32,128] [promptTokens=128] [outputTokens=128]
import { EngineCore, type ModelExecutor, type ModelRunnerOutput, type ModelRunnerRequest } from '@pagoda/engine';
import { KVCacheManager } from '@pagoda/kv-cache';
import { Sampler, validateSamplingParams } from '@pagoda/sampling';
import { Scheduler } from '@pagoda/scheduler';

const vocabSize = 49_152;

/** Logits of random values (argmax must scan every row), as many rows as the step samples, at once. */
class ReadyLogitsExecutor implements ModelExecutor {
  private readonly buffer: Float32Array;

  /** Fills the logits of `maxRows` rows up front, outside the timed loop. */
  constructor(maxRows: number) {
    this.buffer = Float32Array.from({ length: maxRows * vocabSize }, (_, index) => Math.sin(index * 12.9898) * 10);
  }

  async execute(requests: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput> {
    const logitsRowStart = new Int32Array(requests.length + 1);
    let rows = 0;
    requests.forEach((request, index) => {
      logitsRowStart[index] = rows;
      if ((request.logits ?? 'last') === 'last') rows += 1;
    });
    logitsRowStart[requests.length] = rows;
    return { logits: this.buffer.subarray(0, rows * vocabSize), vocabSize, logitsRowStart };
  }

  async release(): Promise<void> {}
}

export default async function engineOverheadBenchmark(args: string[]): Promise<object> {
  const concurrencies = (args[0] ?? '1,8,32,128').split(',').map(Number);
  const promptTokens = Number(args[1] ?? 128);
  const outputTokens = Number(args[2] ?? 128);
  const points = [];
  for (const concurrency of concurrencies) {
    const blockSize = 16;
    const kvCacheManager = new KVCacheManager({ numBlocks: 64 * 1024, blockSize, maxModelLen: 4096, enablePrefixCaching: true });
    const scheduler = new Scheduler({ maxNumSeqs: Math.max(concurrency, 1), maxNumBatchedTokens: 8192, maxModelLen: 4096 }, kvCacheManager);
    const core = new EngineCore(scheduler, new ReadyLogitsExecutor(concurrency), new Sampler());
    const samplingParams = validateSamplingParams({ temperature: 0, maxTokens: outputTokens, ignoreEos: true }, { vocabSize, maxLogprobs: 20 });
    for (let request = 0; request < concurrency; request += 1) {
      core.addRequest({
        requestId: `r${request}`,
        promptTokenIds: Array.from({ length: promptTokens }, (_, position) => (request * 7919 + position * 104_729) % vocabSize),
        samplingParams,
        eosTokenIds: [2],
      });
    }
    let steps = 0;
    let generated = 0;
    const start = performance.now();
    while (core.hasUnfinishedRequests()) {
      for (const output of await core.step()) generated += output.newTokenIds.length;
      steps += 1;
    }
    const seconds = (performance.now() - start) / 1000;
    const point = {
      concurrency,
      steps,
      outputTokens: generated,
      msPerStep: (seconds * 1000) / steps,
      outputTokensPerSecond: generated / seconds,
    };
    console.log(`concurrency ${concurrency}: ${point.msPerStep.toFixed(3)} ms per step, at most ${point.outputTokensPerSecond.toFixed(0)} output tokens/s`);
    points.push(point);
  }
  return { vocabSize, promptTokens, outputTokens, sampling: 'greedy', points };
}

// One measurement of `micro long-context`, run in a process of its own so that its peak RSS is its own: decode steps
// of the model runner on dummy SmolLM2 weights, every request at the same context length, each with its own blocks
// in a scrambled order. Prints one JSON line. The engine comes from the entry given, so that the same steps can run
// against another checkout of the engine (the baseline).
//   decode-steps <engine entry (index.ts)> <contextTokens> <streams> <steps> <intraOpThreads>
import type * as Engine from '@pagoda/engine';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { smolLm2Shape } from '../../dummy-model';

const blockSize = 16;
const warmupSteps = 2;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function greatestCommonDivisor(left: number, right: number): number {
  return right === 0 ? left : greatestCommonDivisor(right, left % right);
}

/** Block `index · stride mod numBlocks`: every block once, neighbours far apart, as a busy pool hands them out. */
function scrambledBlocks(numBlocks: number): Int32Array {
  let stride = 7919;
  while (greatestCommonDivisor(stride, numBlocks) !== 1) stride += 2;
  return Int32Array.from({ length: numBlocks }, (_, index) => (index * stride) % numBlocks);
}

/**
 * Writes values into every pool. Fresh typed arrays are untouched zero pages, which the kernel maps to one shared
 * page: reading those would measure cache hits, not the memory traffic of a real cache.
 */
function fillPools(pools: readonly Float32Array[]): void {
  const pattern = Float32Array.from({ length: 65_536 }, (_, index) => Math.sin(index * 12.9898) * 0.05);
  for (const pool of pools) {
    for (let start = 0; start < pool.length; start += pattern.length) {
      pool.set(pattern.subarray(0, Math.min(pattern.length, pool.length - start)), start);
    }
  }
}

const [entry, contextArg, streamsArg, stepsArg, threadsArg] = process.argv.slice(2);
if (entry === undefined || threadsArg === undefined) {
  console.error('Usage: decode-steps <engine entry> <contextTokens> <streams> <steps> <intraOpThreads>');
  process.exit(2);
}
const contextTokens = Number(contextArg);
const streams = Number(streamsArg);
const steps = Number(stepsArg);
const engine = (await import(pathToFileURL(entry).href)) as typeof Engine;
const config = engine.parseModelConfig(smolLm2Shape);
const blocksPerRequest = Math.ceil((contextTokens + warmupSteps + steps + 1) / blockSize);
const numBlocks = streams * blocksPerRequest;
const runner = await engine.ModelRunner.create(config, engine.dummyWeights(config, 0), {
  numBlocks,
  blockSize,
  intraOpNumThreads: Number(threadsArg),
});
const pools: Float32Array[] = [];
for (let layer = 0; layer < config.numLayers; layer += 1) pools.push(runner.keyPool(layer), runner.valuePool(layer));
fillPools(pools);

const order = scrambledBlocks(numBlocks);
const blockTables = Array.from({ length: streams }, (_, request) =>
  order.subarray(request * blocksPerRequest, (request + 1) * blocksPerRequest),
);
const samples: number[] = [];
for (let step = 0; step < warmupSteps + steps; step += 1) {
  const requests = blockTables.map((blockTable, request) => ({
    tokenIds: [100 + request],
    numComputedTokens: contextTokens + step,
    blockTable,
  }));
  const started = performance.now();
  await runner.execute(requests);
  if (step >= warmupSteps) samples.push(performance.now() - started);
}
await runner.release();

const stepMs = median(samples);
const kvBytesPerToken = 2 * config.numLayers * config.numKvHeads * config.headDim * 4;
console.log(
  JSON.stringify({
    contextTokens,
    streams,
    steps,
    stepMs,
    minStepMs: Math.min(...samples),
    tokensPerSecond: (streams * 1000) / stepMs,
    // The KV each step must read (every request's context), and what that is per second at the median step.
    kvBytesPerStep: streams * contextTokens * kvBytesPerToken,
    kvGBps: (streams * contextTokens * kvBytesPerToken) / (stepMs / 1000) / 1e9,
    poolBytes: numBlocks * blockSize * kvBytesPerToken,
    weightBytes: runner.weightBytes,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    // The machine is shared: the 1-minute load average when the steps ended says how contended they were.
    loadAverage: loadavg()[0],
  }),
);

// The model runner on a dummy (seeded random) model of SmolLM2-135M's shape: prefill and decode throughput, and how
// close batch-1 decode comes to streaming the weights at the machine's memory-copy bandwidth.
//   micro model [intraOpThreads]
import { dummyWeights, loadTokenizer, ModelRunner, parseModelConfig } from '@pagoda/engine';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { smolLm2Shape } from '../dummy-model';


const blockSize = 16;
const promptTokens = 512;
const contextTokens = 256;
const decodeBatchSizes = [1, 8, 32];

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function timeMilliseconds(body: () => Promise<unknown>, iterations: number, warmup = 1): Promise<number[]> {
  for (let index = 0; index < warmup; index += 1) await body();
  const samples: number[] = [];
  for (let index = 0; index < iterations; index += 1) {
    const start = process.hrtime.bigint();
    await body();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return samples;
}

/** Bytes copied per second by one large Buffer.copy (each byte is read once and written once). */
function memoryCopyBandwidth(): { bytes: number; copyGBps: number } {
  const bytes = 512 * 2 ** 20;
  const source = Buffer.alloc(bytes, 1);
  const target = Buffer.alloc(bytes);
  source.copy(target);
  const samples: number[] = [];
  for (let index = 0; index < 5; index += 1) {
    const start = process.hrtime.bigint();
    source.copy(target);
    samples.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  return { bytes, copyGBps: bytes / Math.min(...samples) / 1e9 };
}

export default async function modelBenchmark(args: string[]): Promise<object> {
  const intraOpNumThreads = Number(args[0] ?? cpus().length);
  const config = parseModelConfig(smolLm2Shape);
  const loadStart = performance.now();
  const weights = dummyWeights(config, 0);
  const maxBatch = Math.max(...decodeBatchSizes);
  const blocksPerRequest = Math.ceil((contextTokens + 16) / blockSize);
  const runner = await ModelRunner.create(config, weights, {
    numBlocks: Math.max(maxBatch * blocksPerRequest, Math.ceil(promptTokens / blockSize)),
    blockSize,
    intraOpNumThreads,
  });
  const loadSeconds = (performance.now() - loadStart) / 1000;
  // The tied embedding is one buffer: read whole by the vocabulary projection every step, counted once.
  const weightBytes = runner.weightBytes;

  // The tiny-llama fixture's tokenizer: its 32,000 ids all fall inside the 49,152-row vocabulary.
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
  const tokenizer = await loadTokenizer(join(root, 'tooling', 'fixtures', 'data', 'tiny-llama'));
  const text = 'The quick brown fox jumps over the lazy dog while the paged cache keeps every key and value. ';
  let promptIds = tokenizer.encode(text).ids;
  while (promptIds.length < promptTokens) promptIds = [...promptIds, ...tokenizer.encode(text, { add_special_tokens: false }).ids];
  promptIds = promptIds.slice(0, promptTokens);

  const prefillTable = Array.from({ length: Math.ceil(promptTokens / blockSize) }, (_, index) => index);
  const prefillSamples = await timeMilliseconds(
    () => runner.execute([{ tokenIds: promptIds, numComputedTokens: 0, blockTable: prefillTable }]),
    3,
  );
  const prefillMs = median(prefillSamples);

  // Decode steps read a context of `contextTokens` per request. Timing does not depend on the cached values, so the
  // context is not prefilled; every request has its own blocks, as in serving.
  const decode: Record<string, object> = {};
  let batchOneStepMs = 0;
  for (const batchSize of decodeBatchSizes) {
    const requests = Array.from({ length: batchSize }, (_, requestIndex) => ({
      blockTable: Array.from({ length: blocksPerRequest }, (_, block) => requestIndex * blocksPerRequest + block),
      token: promptIds[requestIndex % promptIds.length]!,
    }));
    let step = 0;
    const samples = await timeMilliseconds(async () => {
      await runner.execute(
        requests.map((request) => ({
          tokenIds: [request.token],
          numComputedTokens: contextTokens + (step % 16),
          blockTable: request.blockTable,
        })),
      );
      step += 1;
    }, batchSize === 1 ? 10 : 5);
    const stepMs = median(samples);
    if (batchSize === 1) batchOneStepMs = stepMs;
    decode[`batch${batchSize}`] = { stepMs, tokensPerSecond: (batchSize * 1000) / stepMs };
  }
  await runner.release();

  const memory = memoryCopyBandwidth();
  return {
    model: 'dummy SmolLM2-135M shape (hidden 576, 30 layers, 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied)',
    intraOpNumThreads,
    weightBytes,
    loadSeconds,
    prefill: { promptTokens, ms: prefillMs, tokensPerSecond: (promptTokens * 1000) / prefillMs },
    decode: { contextTokens, ...decode },
    bandwidth: {
      batchOneDecodeWeightGBps: weightBytes / (batchOneStepMs / 1000) / 1e9,
      memoryCopyGBps: memory.copyGBps,
      note: 'weight bytes per batch-1 decode step over step time, next to bytes copied per second by Buffer.copy',
    },
  };
}

import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  cudaProviderInstalled,
  dummyWeights,
  ExecutionProviderError,
  ModelInputError,
  ModelRunner,
  parseModelConfig,
  weightLoadingProgressBar,
} from '../index';

const smallLlama = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 50,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rope_theta: 10000,
};

function maxDifference(left: Float32Array, right: Float32Array): number {
  let max = 0;
  for (let index = 0; index < left.length; index += 1) max = Math.max(max, Math.abs(left[index]! - right[index]!));
  return max;
}

const prompt = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 32];
const blockTable = [5, 2, 7, 0];

describe('the dummy load format', () => {
  it('makes the same weights for the same seed and different ones for another', async () => {
    const config = parseModelConfig(smallLlama);
    const read = (seed: number) => dummyWeights(config, seed).get('model.layers.0.mlp.up_proj.weight')!.read();
    const first = await read(1);
    expect(await read(1)).toEqual(first);
    expect(await read(2)).not.toEqual(first);
  });

  it('makes any rows of a weight without making the ones before them, the same values as a whole read', async () => {
    const config = parseModelConfig(smallLlama);
    const weights = dummyWeights(config, 4);
    const down = weights.get('model.layers.0.mlp.down_proj.weight')!;
    const whole = (await down.read()) as Float32Array;
    const columns = down.shape[1]!;
    expect(await down.read({ start: 3, end: 7 })).toEqual(whole.subarray(3 * columns, 7 * columns));
  });

  it('runs a checkpoint folder that holds only config.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pagoda-dummy-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'config.json'), JSON.stringify(smallLlama));
    const runner = await ModelRunner.load(dir, { loadFormat: 'dummy', numBlocks: 8, blockSize: 4, intraOpNumThreads: 1 });
    const output = await runner.execute([{ tokenIds: prompt, numComputedTokens: 0, blockTable }]);
    expect(output.logits.length).toBe(50);
    expect(output.logits.every(Number.isFinite)).toBe(true);
    await runner.release();
  });
});

describe('the sliding window', () => {
  // With one layer and RoPE (which depends only on relative positions), the last token's logits under a window of
  // 5 equal those of the last 5 tokens run alone.
  const windowed = parseModelConfig({ ...smallLlama, sliding_window: 5 });
  const weights = dummyWeights(windowed, 7);

  it('limits attention to the last window tokens, in prefill and through the cache', async () => {
    const runner = await ModelRunner.create(windowed, weights, { numBlocks: 16, blockSize: 4, intraOpNumThreads: 1 });
    const whole = await runner.execute([{ tokenIds: prompt, numComputedTokens: 0, blockTable }]);
    const tail = await runner.execute([{ tokenIds: prompt.slice(-5), numComputedTokens: 0, blockTable: [9, 10] }]);
    expect(maxDifference(whole.logits, tail.logits)).toBeLessThan(1e-4);
    const decodeTable = [11, 12, 13];
    await runner.execute([{ tokenIds: prompt.slice(0, -1), numComputedTokens: 0, blockTable: decodeTable, logits: 'none' }]);
    const decoded = await runner.execute([{ tokenIds: prompt.slice(-1), numComputedTokens: prompt.length - 1, blockTable: decodeTable }]);
    expect(maxDifference(decoded.logits, tail.logits)).toBeLessThan(1e-4);
    await runner.release();
  });

  it('makes a difference: full attention over the same prompt gives other logits', async () => {
    const full = parseModelConfig(smallLlama);
    const runner = await ModelRunner.create(full, weights, { numBlocks: 16, blockSize: 4, intraOpNumThreads: 1 });
    const whole = await runner.execute([{ tokenIds: prompt, numComputedTokens: 0, blockTable }]);
    const tail = await runner.execute([{ tokenIds: prompt.slice(-5), numComputedTokens: 0, blockTable: [9, 10] }]);
    expect(maxDifference(whole.logits, tail.logits)).toBeGreaterThan(1e-3);
    await runner.release();
  });
});

describe('batch validation', () => {
  it('refuses a block table too short for the request, naming the request', async () => {
    const config = parseModelConfig(smallLlama);
    const runner = await ModelRunner.create(config, dummyWeights(config), { numBlocks: 8, blockSize: 4, intraOpNumThreads: 1 });
    const request = { tokenIds: prompt, numComputedTokens: 0, blockTable: [0, 1] };
    await expect(runner.execute([request])).rejects.toBeInstanceOf(ModelInputError);
    await expect(runner.execute([request])).rejects.toThrow('request 0 needs 3 blocks for 12 tokens');
    await runner.release();
  });
});

describe('execution providers', () => {
  const config = parseModelConfig(smallLlama);

  it.skipIf(cudaProviderInstalled())('says the CUDA provider binaries are missing and how to install them', async () => {
    const error = await ModelRunner.create(config, dummyWeights(config), {
      numBlocks: 4,
      blockSize: 4,
      executionProvider: 'cuda',
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ExecutionProviderError);
    expect((error as ExecutionProviderError).executionProvider).toBe('cuda');
    expect((error as Error).message).toContain('binaries');
    expect((error as Error).message).toContain('ONNXRUNTIME_NODE_INSTALL=cuda12');
    // The script's real path, wherever the package manager put onnxruntime-node (pnpm: under node_modules/.pnpm).
    const script = /node (\S+\/script\/install\.js)/.exec((error as Error).message)?.[1];
    expect(script !== undefined && existsSync(script)).toBe(true);
  });

  it('refuses an execution provider it does not know', async () => {
    const options = { numBlocks: 4, blockSize: 4, executionProvider: 'tpu' as 'cpu' };
    await expect(ModelRunner.create(config, dummyWeights(config), options)).rejects.toThrow(/unknown execution provider "tpu"/);
  });
});

describe('weightLoadingProgressBar', () => {
  it('draws on a terminal, one line rewritten in place, ending with a newline', () => {
    const written: string[] = [];
    const bar = weightLoadingProgressBar('Loading', { isTTY: true, columns: 80, write: (text) => written.push(text) })!;
    bar(0, 2_000_000);
    bar(1_000_000, 2_000_000);
    bar(2_000_000, 2_000_000);
    expect(written[0]).toMatch(/^\rLoading \[\.+\]\s+0% 0\/2 MB$/);
    expect(written[1]).toMatch(/^\rLoading \[#+\.+\]\s+50% 1\/2 MB$/);
    expect(written.at(-1)).toBe('\n');
  });

  it('stays silent when the stream is not a terminal', () => {
    expect(weightLoadingProgressBar('Loading', { isTTY: false, write: () => undefined })).toBeUndefined();
  });
});

import { fixturePath, readReference } from '@pagoda/fixtures';
import type { CheckpointName } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseModelConfig } from '../model/model-config';
import { ModelRunner } from '../cpu/model-runner';
import type { ModelRunnerRequest } from '../model-step';
import { dummyWeights } from '../model/model-weights';
import { argmax, blockAllocator, expectBatchedGreedyReference, logitsRow, maxDifference } from '../test-logits';
import { KvPoolPersistenceError, PagedModelRunner } from './paged-model-runner';

// The GPU runner's graph, batch layout and self-check on the CPU, with PagedAttention's contract written in standard
// operators (reference-attention.ts). What only a GPU can show (the real kernel, fp16, pools persisting on the
// device) is the GPU check's business: apps/bench/src/gpu-check.ts.

const blockSize = 16;
const numBlocks = 96;



// tiny-qwen2's head size (8) is not a multiple of 16, which PagedAttention's own rotary needs: it runs unfused.
describe.each<[CheckpointName, 'fused' | 'unfused']>([
  ['tiny-llama', 'fused'],
  ['tiny-qwen3', 'fused'],
  ['tiny-qwen3', 'unfused'],
  ['tiny-qwen2', 'unfused'],
])('the paged runner (reference attention) on %s, %s', (name, attentionLayout) => {
  const reference = readReference(name);
  let runner: PagedModelRunner;
  let allocate: (numTokens: number) => number[];
  const singleRunLogits: Float32Array[] = [];

  beforeAll(async () => {
    runner = await PagedModelRunner.load(fixturePath(name), {
      numBlocks,
      blockSize,
      device: 'cpu',
      maxModelLen: 1024,
      attentionLayout,
      intraOpNumThreads: 1,
    });
    allocate = blockAllocator(numBlocks, blockSize, 37);
    for (const prompt of reference.prompts) {
      const output = await runner.execute([
        { tokenIds: prompt.ids, numComputedTokens: 0, blockTable: allocate(prompt.ids.length), logits: 'all' },
      ]);
      singleRunLogits.push(output.logits);
    }
  });
  afterAll(() => runner.release());

  it('matches transformers at every prefill position of every prompt within 1e-4', () => {
    reference.prompts.forEach((prompt, promptIndex) => {
      prompt.prefill.forEach((expected, position) => {
        const logits = logitsRow(singleRunLogits[promptIndex]!, runner.config.vocabSize, position);
        expected.ids.forEach((id, rank) => {
          expect(Math.abs(logits[id]! - expected.logits[rank]!), `prompt ${promptIndex} position ${position} id ${id}`).toBeLessThan(1e-4);
        });
      });
    });
  });

  it('reproduces the 24 greedy reference tokens of every prompt, all prompts decoding together through the pools', async () => {
    await expectBatchedGreedyReference(runner, reference, allocate);
  });

  it('gives each prompt its own logits within 1e-4 in a mixed step: chunks of different prompts with cached prefixes', async () => {
    // Every prompt's first half in one step, then every second half together with a one-token decode-like chunk.
    const tables = reference.prompts.map((prompt) => allocate(prompt.ids.length));
    const halves = reference.prompts.map((prompt) => Math.ceil(prompt.ids.length / 2));
    const first = await runner.execute(
      reference.prompts.map((prompt, index) => ({ tokenIds: prompt.ids.slice(0, halves[index]), numComputedTokens: 0, blockTable: tables[index]!, logits: 'none' as const })),
    );
    expect(first.logits).toHaveLength(0);
    const requests: ModelRunnerRequest[] = reference.prompts.map((prompt, index) => ({
      tokenIds: prompt.ids.slice(halves[index]),
      numComputedTokens: halves[index]!,
      blockTable: tables[index]!,
      logits: 'all',
    }));
    const output = await runner.execute(requests);
    const vocabSize = output.vocabSize;
    reference.prompts.forEach((prompt, index) => {
      const start = output.logitsRowStart[index]!;
      const count = prompt.ids.length - halves[index]!;
      expect(output.logitsRowStart[index + 1]! - start).toBe(count);
      const expected = singleRunLogits[index]!.subarray(halves[index]! * vocabSize, prompt.ids.length * vocabSize);
      expect(maxDifference(output.logits.subarray(start * vocabSize, (start + count) * vocabSize), expected)).toBeLessThan(1e-4);
    });
  });

  it('passes its start-up self-check, which lost pool writes would fail by a wide margin', async () => {
    const check = await runner.selfCheck();
    expect(check.error).toBeLessThan(1e-5);
    expect(check.lostWritesError).toBeGreaterThan(0.1);
  });
});

describe.each<[CheckpointName, 'fused' | 'unfused', 'int8' | 'int4']>([
  ['tiny-llama', 'fused', 'int8'],
  ['tiny-qwen2', 'unfused', 'int4'],
])('the paged runner (reference attention) on %s, %s, with %s weights (MatMulNBits, GatherBlockQuantized)', (name, attentionLayout, quantization) => {
  it("gives the CPU runner's quantized logits within 1e-4 and its greedy tokens: q/k/v and gate/up packed as blocks", async () => {
    const options = { numBlocks, blockSize, intraOpNumThreads: 1, quantization, accuracyLevel: 1 };
    const [paged, cpu] = await Promise.all([
      PagedModelRunner.load(fixturePath(name), { ...options, device: 'cpu', maxModelLen: 1024, attentionLayout }),
      ModelRunner.load(fixturePath(name), options),
    ]);
    try {
      const allocate = blockAllocator(numBlocks, blockSize, 29);
      for (const prompt of readReference(name).prompts.slice(0, 2)) {
        const blockTable = allocate(prompt.ids.length + 8);
        let step: ModelRunnerRequest[] = [{ tokenIds: prompt.ids, numComputedTokens: 0, blockTable, logits: 'all' }];
        for (let generated = 0; generated < 8; generated += 1) {
          const [ours, theirs] = [await paged.execute(step), await cpu.execute(step)];
          expect(maxDifference(ours.logits, theirs.logits)).toBeLessThan(1e-4);
          const last = ours.logitsRowStart[1]! - 1;
          const token = argmax(logitsRow(ours.logits, ours.vocabSize, last));
          expect(token).toBe(argmax(logitsRow(theirs.logits, theirs.vocabSize, last)));
          step = [{ tokenIds: [token], numComputedTokens: prompt.ids.length + generated, blockTable }];
        }
      }
    } finally {
      await Promise.all([paged.release(), cpu.release()]);
    }
  });
});

describe('the start-up self-check', () => {
  it('refuses a runner whose pools forget their writes between runs, saying so', async () => {
    const runner = await PagedModelRunner.load(fixturePath('tiny-llama'), {
      numBlocks: 8,
      blockSize,
      device: 'cpu',
      maxModelLen: 256,
      dropPoolWrites: true,
    });
    try {
      const failure = await runner.selfCheck().catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(KvPoolPersistenceError);
      expect((failure as KvPoolPersistenceError).code).toBe('kv_pool_not_persistent');
      expect((failure as Error).message).toMatch(/do not keep PagedAttention's writes between runs on cpu .*differs .* by [\d.]+ of the logits' scale/);
    } finally {
      await runner.release();
    }
  });

  it("refuses PagedAttention's own rotary for a head size that is not a multiple of 16, and picks the other layout itself", async () => {
    await expect(
      PagedModelRunner.load(fixturePath('tiny-qwen2'), { numBlocks: 8, blockSize, device: 'cpu', maxModelLen: 256, attentionLayout: 'fused' }),
    ).rejects.toThrow(/needs a head size divisible by 16, got 8/);
    const runner = await PagedModelRunner.load(fixturePath('tiny-qwen2'), { numBlocks: 8, blockSize, device: 'cpu', maxModelLen: 256 });
    await runner.release();
  });

  it('refuses block sizes PagedAttention cannot take', async () => {
    await expect(
      PagedModelRunner.load(fixturePath('tiny-llama'), { numBlocks: 8, blockSize: 24, device: 'cpu', maxModelLen: 256 }),
    ).rejects.toThrow(/power of two of at least 16, got 24/);
  });
});

describe('sliding windows', () => {
  it("match the CPU runner's window (transformers' rule) in one run, in chunks and decoding, and differ from full attention", async () => {
    const raw = JSON.parse(readFileSync(fixturePath('tiny-llama', 'config.json'), 'utf8')) as Record<string, unknown>;
    const mistral = { ...raw, architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 5 };
    const windowed = parseModelConfig(mistral);
    const weights = dummyWeights(windowed, 3);
    const options = { numBlocks: 16, blockSize, intraOpNumThreads: 1 };
    const cpu = await ModelRunner.create(windowed, weights, options);
    const paged = await PagedModelRunner.create(windowed, weights, { ...options, device: 'cpu', maxModelLen: 256 });
    const full = await PagedModelRunner.create(parseModelConfig({ ...mistral, sliding_window: null }), weights, { ...options, device: 'cpu', maxModelLen: 256 });
    try {
      const prompt = Array.from({ length: 23 }, (_, index) => (index * 131 + 7) % windowed.vocabSize);
      const whole = (runner: ModelRunner | PagedModelRunner, table: number[]) =>
        runner.execute([{ tokenIds: prompt, numComputedTokens: 0, blockTable: table, logits: 'all' }]);
      const expected = (await whole(cpu, [0, 1])).logits;
      expect(maxDifference((await whole(paged, [2, 3])).logits, expected)).toBeLessThan(1e-4);
      expect(maxDifference((await whole(full, [4, 5])).logits, expected)).toBeGreaterThan(1e-3);
      // The same prompt in chunks of 7 and 16 over blocks [6, 7], then three decode steps on both runners.
      await paged.execute([{ tokenIds: prompt.slice(0, 7), numComputedTokens: 0, blockTable: [6, 7], logits: 'none' }]);
      const chunk = await paged.execute([{ tokenIds: prompt.slice(7), numComputedTokens: 7, blockTable: [6, 7], logits: 'all' }]);
      expect(maxDifference(chunk.logits, expected.subarray(7 * windowed.vocabSize))).toBeLessThan(1e-4);
      for (let step = 0; step < 3; step += 1) {
        const request = { tokenIds: [step + 1], numComputedTokens: 23 + step, blockTable: [6, 7] };
        const ours = await paged.execute([request]);
        const theirs = await cpu.execute([{ ...request, blockTable: [0, 1] }]);
        expect(maxDifference(ours.logits, theirs.logits)).toBeLessThan(1e-4);
      }
    } finally {
      await Promise.all([cpu.release(), paged.release(), full.release()]);
    }
  });
});

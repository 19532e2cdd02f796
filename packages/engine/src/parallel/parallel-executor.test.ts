import { fixturePath, readReference } from '@pagoda/fixtures';
import type { CheckpointName } from '@pagoda/fixtures';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelExecutor } from '../core/engine-core';
import { loadModelConfig, parseModelConfig } from '../model/model-config';
import { ModelRunner } from '../cpu/model-runner';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import { dummyWeights } from '../model/model-weights';
import type { Quantization } from '../model/quantization';
import { writeSafetensors } from '../model/test-safetensors';
import { createParallelModelExecutor } from './parallel-executor';
import { argmax, maxDifference } from '../test-logits';

const blockSize = 16;
const numBlocks = 64;

/**
 * Every layout of tp 1 or 2 (4 heads, 2 KV heads) and pp up to the layers, and tp 4 once, where each rank has one
 * query head and the two KV heads are replicated.
 */
const layouts: Array<[CheckpointName, number, number]> = [
  ['tiny-llama', 2, 1],
  ['tiny-llama', 1, 2],
  ['tiny-llama', 2, 2],
  ['tiny-llama', 4, 1],
  ['tiny-qwen2', 2, 1],
  ['tiny-qwen2', 1, 2],
  ['tiny-qwen2', 2, 2],
  ['tiny-qwen3', 2, 1],
  ['tiny-qwen3', 1, 2],
  ['tiny-qwen3', 1, 3],
  ['tiny-qwen3', 2, 2],
  ['tiny-qwen3', 2, 3],
];

/**
 * A parallel executor over `modelDir`'s checkpoint at tensor-parallel size `tp` and pipeline size `pp`, quantized
 * with MatMulNBits' exact float32 arithmetic (accuracy_level 1) when `quantization` is given: at level 4 an
 * activation whose float32 sum differs in the last bit (the all-reduce adds in another order) can round to another
 * int8 code, a step of 1/127 of its block, so tensor-parallel logits then differ from one rank's by more than 1e-4.
 */
async function startParallel(modelDir: string, tp: number, pp: number, quantization?: Quantization): Promise<ModelExecutor> {
  return createParallelModelExecutor({
    ...(quantization === undefined ? {} : { quantization, accuracyLevel: 1 }),
    modelDir,
    modelConfig: await loadModelConfig(modelDir),
    tensorParallelSize: tp,
    pipelineParallelSize: pp,
    numBlocks,
    blockSize,
    loadFormat: 'safetensors',
    seed: 0,
    intraOpNumThreads: 1,
    // A tiny step budget makes the shared slot small, so all-reduces, stage transfers and the logits all-gather
    // of these steps go in several chunks.
    maxNumBatchedTokens: 16,
    maxNumSeqs: 1,
  });
}

async function startBoth(modelDir: string, tp: number, pp: number, quantization?: Quantization): Promise<[ModelRunner, ModelExecutor]> {
  return Promise.all([
    ModelRunner.load(modelDir, { numBlocks, blockSize, intraOpNumThreads: 1, ...(quantization === undefined ? {} : { quantization, accuracyLevel: 1 }) }),
    startParallel(modelDir, tp, pp, quantization),
  ]);
}

/**
 * Runs three prompts through both executors, step by step with the same inputs, and checks every step's logits
 * agree within 1e-4: step 1 runs the first two prompts whole (every position's logits of the first) and a chunk of
 * the third; then the rest of the third alongside the first decodes; then greedy decodes of all three (tokens from
 * the parallel logits) until each has `steps` tokens. Block tables are scrambled and the same for both (each has
 * its own pools). Returns each prompt's greedy tokens and the largest difference.
 */
async function compareSteps(
  single: ModelRunner,
  parallel: ModelExecutor,
  prompts: readonly (readonly number[])[],
  steps: number,
): Promise<{ generated: number[][]; worst: number }> {
  const order = Array.from({ length: numBlocks }, (_, index) => (index * 37) % numBlocks);
  let nextBlock = 0;
  const states = prompts.map((prompt) => {
    const count = Math.ceil((prompt.length + steps) / blockSize);
    const blockTable = order.slice(nextBlock, nextBlock + count);
    nextBlock += count;
    return { prompt, blockTable, numComputedTokens: 0, generated: [] as number[] };
  });
  expect(nextBlock).toBeLessThanOrEqual(numBlocks);
  let worst = 0;
  const run = async (requests: ModelRunnerRequest[]): Promise<ModelRunnerOutput> => {
    const [ours, theirs] = await Promise.all([parallel.execute(requests), single.execute(requests)]);
    expect(ours.vocabSize).toBe(theirs.vocabSize);
    expect(Array.from(ours.logitsRowStart)).toEqual(Array.from(theirs.logitsRowStart));
    const difference = maxDifference(ours.logits, theirs.logits);
    worst = Math.max(worst, difference);
    expect(difference).toBeLessThan(1e-4);
    return ours;
  };
  const sampleLast = (output: ModelRunnerOutput, index: number): number => {
    const row = output.logitsRowStart[index + 1]! - 1;
    return argmax(output.logits.subarray(row * output.vocabSize, (row + 1) * output.vocabSize));
  };
  const [short, medium, long] = states as [(typeof states)[0], (typeof states)[0], (typeof states)[0]];
  const firstChunk = Math.min(300, long.prompt.length - 1);
  const first = await run([
    { tokenIds: short.prompt, numComputedTokens: 0, blockTable: short.blockTable, logits: 'all' },
    { tokenIds: medium.prompt, numComputedTokens: 0, blockTable: medium.blockTable, logits: 'last' },
    { tokenIds: long.prompt.slice(0, firstChunk), numComputedTokens: 0, blockTable: long.blockTable, logits: 'none' },
  ]);
  const next = [[sampleLast(first, 0)], [sampleLast(first, 1)], long.prompt.slice(firstChunk)];
  short.generated.push(next[0]![0]!);
  medium.generated.push(next[1]![0]!);
  short.numComputedTokens = short.prompt.length;
  medium.numComputedTokens = medium.prompt.length;
  long.numComputedTokens = firstChunk;
  for (;;) {
    const active = states.map((_, index) => index).filter((index) => states[index]!.generated.length < steps);
    if (active.length === 0) break;
    const output = await run(
      active.map((index) => ({
        tokenIds: next[index]!,
        numComputedTokens: states[index]!.numComputedTokens,
        blockTable: states[index]!.blockTable,
      })),
    );
    active.forEach((index, row) => {
      const state = states[index]!;
      const token = sampleLast(output, row);
      state.numComputedTokens += next[index]!.length;
      state.generated.push(token);
      next[index] = [token];
    });
  }
  return { generated: states.map((state) => state.generated), worst };
}

const worstByLayout: Record<string, number> = {};
afterAll(() => console.info('largest logit difference from one rank, by layout', worstByLayout));

describe.each(layouts)('%s at tensor_parallel_size %i, pipeline_parallel_size %i', (checkpoint, tp, pp) => {
  const reference = readReference(checkpoint);
  let single: ModelRunner;
  let parallel: ModelExecutor;
  beforeAll(async () => {
    [single, parallel] = await startBoth(fixturePath(checkpoint), tp, pp);
  });
  afterAll(async () => {
    await Promise.all([single?.release(), parallel?.release()]);
  });

  it('gives the logits of one rank within 1e-4 through chunked prefill, packed prompts and greedy decoding, and the reference greedy tokens', async () => {
    const steps = 24;
    const { generated, worst } = await compareSteps(single, parallel, reference.prompts.map((prompt) => prompt.ids), steps);
    worstByLayout[`${checkpoint} tp${tp} pp${pp}`] = worst;
    reference.prompts.forEach((prompt, index) => {
      // Past a step whose top-2 margin is under 1e-3, float noise may pick either token; compare up to it.
      const firstTie = prompt.greedy.steps.findIndex((entry) => entry.margin < 1e-3);
      const comparable = firstTie === -1 ? steps : firstTie + 1;
      expect(generated[index]!.slice(0, comparable)).toEqual(prompt.greedy.ids.slice(0, comparable));
    });
  });
});

describe.each<[CheckpointName, number, number, Quantization]>([
  ['tiny-llama', 2, 1, 'int8'],
  ['tiny-qwen3', 2, 2, 'int4'],
])('%s at tensor_parallel_size %i, pipeline_parallel_size %i, quantized %s', (checkpoint, tp, pp, quantization) => {
  let single: ModelRunner;
  let parallel: ModelExecutor;
  beforeAll(async () => {
    [single, parallel] = await startBoth(fixturePath(checkpoint), tp, pp, quantization);
  });
  afterAll(async () => {
    await Promise.all([single?.release(), parallel?.release()]);
  });

  it("gives one quantized rank's logits within 1e-4: the shards fall on block boundaries, so every rank holds the very blocks", async () => {
    const { worst } = await compareSteps(single, parallel, readReference(checkpoint).prompts.map((prompt) => prompt.ids), 6);
    worstByLayout[`${checkpoint} tp${tp} pp${pp} ${quantization}`] = worst;
  });
});

describe('a 700-token context at tensor_parallel_size 2, pipeline_parallel_size 2', () => {
  let single: ModelRunner;
  let parallel: ModelExecutor;
  beforeAll(async () => {
    [single, parallel] = await startBoth(fixturePath('tiny-llama'), 2, 2);
  });
  afterAll(async () => {
    await Promise.all([single?.release(), parallel?.release()]);
  });

  it('gives the logits of one rank within 1e-4 while each rank reads its KV heads of 45 scattered blocks', async () => {
    const prompt = (length: number, offset: number) => Array.from({ length }, (_, index) => (index * 7919 + offset) % 32_000);
    const { worst } = await compareSteps(single, parallel, [prompt(40, 1), prompt(100, 2), prompt(700, 3)], 6);
    worstByLayout['tiny-llama tp2 pp2, 700-token context'] = worst;
  });
});

describe('a Mistral-style checkpoint: o_proj biases, sliding-window attention, a vocabulary tp 2 does not divide', () => {
  // vocab 1001 splits into slices of 501 and 500: the last all-gathered slice is padded. Llama's attention_bias puts
  // a bias on o_proj, which only tensor-parallel rank 0 adds. Every layer attends within 8 tokens.
  const config = {
    architectures: ['MistralForCausalLM'],
    model_type: 'mistral',
    vocab_size: 1001,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 256,
    attention_bias: true,
    sliding_window: 8,
    tie_word_embeddings: false,
  };
  let modelDir: string;
  let single: ModelRunner;
  let parallel: ModelExecutor;
  beforeAll(async () => {
    modelDir = await mkdtemp(join(tmpdir(), 'pagoda-parallel-'));
    await writeFile(join(modelDir, 'config.json'), JSON.stringify(config));
    // dummyWeights leaves biases at zero; give them values so a bias added twice (or never) shows.
    let state = 12345;
    const tensors = [];
    for (const [name, tensor] of dummyWeights(parseModelConfig(config), 3)) {
      const data = (await tensor.read()) as Float32Array;
      const values = name.endsWith('.bias') ? data.map(() => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.5) : data;
      tensors.push({ name, dtype: 'F32', shape: [...tensor.shape], bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
    }
    await writeSafetensors(join(modelDir, 'model.safetensors'), tensors);
    [single, parallel] = await startBoth(modelDir, 2, 2);
  });
  afterAll(async () => {
    await Promise.all([single?.release(), parallel?.release()]);
    if (modelDir !== undefined) await rm(modelDir, { recursive: true, force: true });
  });

  it('gives the logits of one rank within 1e-4 at tensor_parallel_size 2, pipeline_parallel_size 2', async () => {
    const prompt = (length: number, offset: number) => Array.from({ length }, (_, index) => (index * 37 + offset) % 1001);
    const { worst } = await compareSteps(single, parallel, [prompt(5, 1), prompt(13, 2), prompt(40, 3)], 6);
    worstByLayout['mistral-style tp2 pp2'] = worst;
  });
});

describe('a failing rank', () => {
  it('fails the step and every later one with an ExecutorError naming the rank and the cause, and still closes', async () => {
    const modelDir = fixturePath('tiny-llama');
    const executor = await startParallel(modelDir, 1, 2);
    try {
      const bad = executor.execute([{ tokenIds: [1, 2], numComputedTokens: 0, blockTable: [numBlocks] }]);
      await expect(bad).rejects.toMatchObject({ code: 'rank_failed', message: expect.stringMatching(/^rank \d failed while executing: .*outside 0\.\.63/) });
      await expect(executor.execute([{ tokenIds: [1, 2], numComputedTokens: 0, blockTable: [0] }])).rejects.toMatchObject({
        code: 'rank_failed',
      });
    } finally {
      await executor.release();
    }
  });
});

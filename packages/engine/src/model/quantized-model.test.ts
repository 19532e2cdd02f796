import { fixturePath, readReference } from '@pagoda/fixtures';
import type { CheckpointName } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelRunner } from '../cpu/model-runner';
import { argmax, blockAllocator, maxDifference, teacherForcedLogits } from '../test-logits';
import { loadModelConfig } from './model-config';
import { loadCheckpointWeights, quantizeModelWeights } from './model-weights';
import { dequantizeRows } from './quantization';
import { floatWeight, type ModelWeights, type WeightTensor } from './weight-tensor';

const blockSize = 16;
const numBlocks = 160;

/**
 * The smallest reference margin above which int8 must give the reference's token. The issue asked for 0.1, which no
 * implementation of llama.cpp's Q8_0 meets on these fixtures: the Q8_0 values themselves, run in float32 (the
 * dequantized-float runner below), pick another token at steps of margin 0.104 and 0.133 (tiny-qwen2) and 0.124
 * (tiny-llama). Their hidden sizes of 32 and 64 leave each logit a sum of few terms, so Q8_0's rounding moves logits
 * by up to 0.4 here. The first test pins the kernel to the exact Q8_0 model, so this one tests only Q8_0 itself.
 */
const int8MarginThreshold = 0.15;

/** The weights with every quantized one replaced by the float32 values of its blocks: the Q8_0 model, exactly. */
async function dequantizedWeights(weights: ModelWeights): Promise<ModelWeights> {
  const exact = new Map<string, WeightTensor>();
  for (const [name, tensor] of weights) {
    exact.set(name, tensor.format === 'float32' ? tensor : floatWeight(tensor.shape, dequantizeRows(await tensor.read())));
  }
  return exact;
}

describe.each<CheckpointName>(['tiny-llama', 'tiny-qwen2', 'tiny-qwen3'])('int8 weights on %s', (name) => {
  const reference = readReference(name);
  let quantizedExact: ModelRunner;
  let quantizedDefault: ModelRunner;
  let dequantized: ModelRunner;

  beforeAll(async () => {
    const config = await loadModelConfig(fixturePath(name));
    const weights = quantizeModelWeights(await loadCheckpointWeights(fixturePath(name), config), 'int8');
    const options = { numBlocks, blockSize, intraOpNumThreads: 1 };
    [quantizedExact, quantizedDefault, dequantized] = await Promise.all([
      ModelRunner.create(config, weights, { ...options, accuracyLevel: 1 }),
      ModelRunner.create(config, weights, options),
      ModelRunner.create(config, await dequantizedWeights(weights), options),
    ]);
  });
  afterAll(async () => {
    await Promise.all([quantizedExact?.release(), quantizedDefault?.release(), dequantized?.release()]);
  });

  it('runs the Q8_0 model exactly at accuracy_level 1: teacher-forced logits within 1e-4 of float32 math on the blocks', async () => {
    let worst = 0;
    for (const prompt of reference.prompts) {
      const ours = await teacherForcedLogits(quantizedExact, prompt, blockAllocator(numBlocks, blockSize, 7));
      const exact = await teacherForcedLogits(dequantized, prompt, blockAllocator(numBlocks, blockSize, 7));
      ours.rows.forEach((row, step) => (worst = Math.max(worst, maxDifference(row, exact.rows[step]!))));
    }
    expect(worst).toBeLessThan(1e-4);
  });

  it(`teacher-forced on the reference's greedy ids, gives the reference token wherever its margin is above ${int8MarginThreshold} (default accuracy level)`, async () => {
    const allocate = blockAllocator(numBlocks, blockSize, 11);
    let checked = 0;
    const wrong: string[] = [];
    for (const [promptIndex, prompt] of reference.prompts.entries()) {
      const { rows } = await teacherForcedLogits(quantizedDefault, prompt, allocate);
      prompt.greedy.steps.forEach((step, index) => {
        if (step.margin <= int8MarginThreshold) return;
        checked += 1;
        if (argmax(rows[index]!) !== prompt.greedy.ids[index]) wrong.push(`prompt ${promptIndex} step ${index} (margin ${step.margin.toFixed(3)})`);
      });
    }
    // About half the 72 steps or more are compared on every fixture (37 to 51).
    expect(checked).toBeGreaterThanOrEqual(35);
    expect(wrong).toEqual([]);
  });
});

// GGUF files at Q8_0, Q4_0, Q4_K and Q6_K, made by @pagoda/engine/test's writer, read by llama.cpp and by Pagoda's
// GGUF reader: teacher-forced on the fixture's prompts, the two engines' next-token distributions must agree as two
// runs of the same quantized values do. A block laid out the wrong way round, in the writer or the reader, would put
// them far apart (a KL divergence near 1 rather than 1e-4).
import { dummyWeights, ModelRunner, parseModelConfig } from '@pagoda/engine';
import { exportGguf } from '@pagoda/engine/test';
import { fixturePath } from '@pagoda/fixtures';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportModelGguf } from '../gguf/export-llama';
import { agreement, llamaCppLogProbabilities, pagodaLogProbabilities } from './accuracy';
import { fixtureSequences } from './compare-accuracy';
import { loadLlamaCpp } from './llama-cpp-runner';

const loaded = await loadLlamaCpp();
if ('error' in loaded) console.warn(`skipping the quantized llama.cpp cross-check: node-llama-cpp cannot load its prebuilt CPU binary here (${loaded.error})`);

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'pagoda-bench-quantized-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** Both engines' distributions on one GGUF file, and how far apart they are. */
async function crossCheck(file: string, vocabSize: number) {
  if ('error' in loaded) throw new Error('unreachable');
  const sequences = fixtureSequences();
  const model = await loaded.llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const numBlocks = sequences.reduce((sum, sequence) => sum + Math.ceil(sequence.tokens.length / 16), 0);
  // accuracy_level 1: Pagoda computes the file's values in float32, llama.cpp with Q8 activations (its own kernels).
  const runner = await ModelRunner.load(file, { numBlocks, blockSize: 16, intraOpNumThreads: 1, accuracyLevel: 1 });
  try {
    const llamaCpp = await llamaCppLogProbabilities(model, sequences, 1, vocabSize);
    return agreement(llamaCpp, await pagodaLogProbabilities(runner, sequences));
  } finally {
    await runner.release();
    await model.dispose();
  }
}

describe.skipIf('error' in loaded)('llama.cpp and Pagoda on the same quantized GGUF file', () => {
  // Measured: KL 4.2e-4 and 4.9e-4, top-1 94% and 96% (random weights leave near-ties that llama.cpp's int8
  // activations tip either way).
  it.each(['Q8_0', 'Q4_0'] as const)('tiny-llama at %s: the same next-token distributions (KL < 2e-3, top-1 >= 90%%)', async (type) => {
    const file = join(directory, `tiny-llama-${type}.gguf`);
    await exportModelGguf(fixturePath('tiny-llama'), file, { weights: 'checkpoint', type });
    const result = await crossCheck(file, 32000);
    expect(result.mean_kl).toBeLessThan(2e-3);
    expect(result.top1_agreement).toBeGreaterThanOrEqual(0.9);
  });

  // Rows of 256: whole K-quant super-blocks. Pagoda re-quantizes Q6_K to Q8_0 and Q4_K to Q4_0, so the two differ
  // by that rounding too (measured KL 5.5e-5 and 5.6e-3).
  it.each([
    ['Q6_K', 1e-3],
    ['Q4_K', 2e-2],
  ] as const)('a Llama of hidden size 256 at %s: distributions close to llama.cpp own (KL < %s)', async (type, bound) => {
    const config = parseModelConfig({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: 32000,
      hidden_size: 256,
      intermediate_size: 512,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 1024,
      bos_token_id: 1,
      eos_token_id: 2,
    });
    const file = join(directory, `hidden-256-${type}.gguf`);
    await exportGguf(config, dummyWeights(config, 9), file, { type, embeddingType: 'Q8_0', tokenizer: fixturePath('tiny-llama') });
    const result = await crossCheck(file, 32000);
    expect(result.mean_kl).toBeLessThan(bound);
  });
});

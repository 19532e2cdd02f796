// Realistic model shapes without downloading weights: a checkpoint folder holding only config.json (the engine's
// `dummy` load format fills in seeded random weights) and the tiny-llama fixture's tokenizer, whose 32,000 ids all
// fall inside these vocabularies.
import { fixturePath } from '@pagoda/fixtures';
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** SmolLM2-135M's shape: hidden 576, 30 layers, 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied embeddings. */
export const smolLm2Shape = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  tie_word_embeddings: true,
  bos_token_id: 1,
  eos_token_id: 2,
};

/**
 * Qwen3-0.6B's shape: hidden 1024, 28 layers, 16 heads of 128, 8 KV heads, intermediate 3072, vocab 151,936, tied
 * embeddings (2.38 GB of float32 weights, 622 MB of them the embedding).
 */
export const qwen3Shape = {
  architectures: ['Qwen3ForCausalLM'],
  model_type: 'qwen3',
  vocab_size: 151936,
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  max_position_embeddings: 40960,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  bos_token_id: 151643,
  eos_token_id: 151645,
};

/** Writes a dummy checkpoint folder for `config` in a new temporary directory; returns its path. */
export async function writeDummyModelDir(config: Record<string, unknown> = smolLm2Shape): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'pagoda-dummy-model-'));
  await writeFile(join(directory, 'config.json'), JSON.stringify(config, null, 2));
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) {
    await copyFile(fixturePath('tiny-llama', file), join(directory, file));
  }
  return directory;
}

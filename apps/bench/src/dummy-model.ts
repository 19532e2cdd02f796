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

/** Writes a dummy checkpoint folder for `config` in a new temporary directory; returns its path. */
export async function writeDummyModelDir(config: Record<string, unknown> = smolLm2Shape): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'pagoda-dummy-model-'));
  await writeFile(join(directory, 'config.json'), JSON.stringify(config, null, 2));
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) {
    await copyFile(fixturePath('tiny-llama', file), join(directory, file));
  }
  return directory;
}

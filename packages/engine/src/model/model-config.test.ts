import { fixturePath } from '@pagoda/fixtures';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadModelConfig, ModelConfigError, parseModelConfig, PagodaEngineError } from '../index';

describe('loadModelConfig', () => {
  it('reads tiny-llama: GQA with an untied lm_head', async () => {
    const config = await loadModelConfig(fixturePath('tiny-llama'));
    expect(config).toMatchObject({ family: 'llama', numHeads: 4, numKvHeads: 2, tieWordEmbeddings: false, qkNorm: false });
    expect(config.headDim * config.numHeads).toBe(config.hiddenSize);
  });

  it('reads tiny-qwen2: q/k/v biases, tied embeddings, no sliding window when use_sliding_window is false', async () => {
    const config = await loadModelConfig(fixturePath('tiny-qwen2'));
    expect(config).toMatchObject({
      family: 'qwen2',
      hiddenSize: 32,
      vocabSize: 151936,
      attentionBias: true,
      tieWordEmbeddings: true,
      slidingWindow: undefined,
      ropeTheta: 1_000_000,
      eosTokenIds: [151645],
    });
  });

  it('reads tiny-qwen3: an explicit head_dim that differs from hidden/heads, and q/k norms', async () => {
    const config = await loadModelConfig(fixturePath('tiny-qwen3'));
    expect(config.family).toBe('qwen3');
    expect(config.qkNorm).toBe(true);
    expect(config.headDim).toBe(32);
    expect(config.headDim * config.numHeads).not.toBe(config.hiddenSize);
  });

  it('takes rope_theta and the scaling from the newer rope_parameters form', () => {
    const config = parseModelConfig({
      architectures: ['LlamaForCausalLM'],
      vocab_size: 128256,
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8 },
    });
    expect(config.ropeTheta).toBe(500000);
    expect(config.ropeScaling).toEqual({ rope_type: 'llama3', factor: 8 });
    expect(config.headDim).toBe(128);
  });

  it('refuses an unsupported architecture with a typed error naming the file and the supported ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pagoda-config-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'config.json'), JSON.stringify({ architectures: ['GPT2LMHeadModel'] }));
    const error = await loadModelConfig(dir).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelConfigError);
    expect(PagodaEngineError.isInstance(error)).toBe(true);
    expect((error as ModelConfigError).code).toBe('model_config_invalid');
    expect((error as Error).message).toContain(join(dir, 'config.json'));
    expect((error as Error).message).toContain('unsupported architecture "GPT2LMHeadModel"');
    expect((error as Error).message).toContain('Qwen3ForCausalLM');
  });

  it('refuses an unknown model_type with a typed error naming the field, even under a supported architecture', () => {
    const error = (() => {
      try {
        return parseModelConfig({ architectures: ['LlamaForCausalLM'], model_type: 'gpt2' }, '/m/config.json');
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ModelConfigError);
    expect((error as ModelConfigError).field).toBe('model_type');
    expect((error as Error).message).toBe('/m/config.json: unsupported model_type "gpt2"; supported: llama, mistral, qwen2, qwen3');
  });

  it("reads Qwen2's max_window_layers as per-layer types: layers from that index on slide", () => {
    const config = parseModelConfig({
      architectures: ['Qwen2ForCausalLM'],
      vocab_size: 10,
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 3,
      num_attention_heads: 2,
      use_sliding_window: true,
      sliding_window: 4,
      max_window_layers: 2,
    });
    expect(config.slidingWindow).toBe(4);
    expect(config.layerTypes).toEqual(['full_attention', 'full_attention', 'sliding_attention']);
  });

  it('names the malformed field', () => {
    expect(() =>
      parseModelConfig({ architectures: ['Qwen2ForCausalLM'], hidden_size: 'big' }, '/m/config.json'),
    ).toThrow('/m/config.json: hidden_size must be a positive integer, got "big"');
  });

  it('reports a missing config.json as a ModelConfigError', async () => {
    await expect(loadModelConfig(join(tmpdir(), 'pagoda-no-such-model'))).rejects.toThrow(/cannot read the checkpoint config/);
  });
});

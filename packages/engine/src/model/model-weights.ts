import type { ModelConfig } from './model-config';
import { weightLoadingProgressBar } from '../progress-bar';
import { readSafetensorsIndex, readSafetensorsTensors } from './safetensors';
import type { ModelWeights, WantedTensor, WeightTensor } from './safetensors';

/** Every tensor the graph reads, with the shape the config implies, in Hugging Face naming. */
export function expectedWeights(config: ModelConfig): WantedTensor[] {
  const { hiddenSize, numHeads, numKvHeads, headDim, intermediateSize, vocabSize } = config;
  const wanted: WantedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [vocabSize, hiddenSize] }];
  for (let layer = 0; layer < config.numLayers; layer += 1) {
    const prefix = `model.layers.${layer}`;
    wanted.push(
      { name: `${prefix}.input_layernorm.weight`, shape: [hiddenSize] },
      { name: `${prefix}.self_attn.q_proj.weight`, shape: [numHeads * headDim, hiddenSize] },
      { name: `${prefix}.self_attn.k_proj.weight`, shape: [numKvHeads * headDim, hiddenSize] },
      { name: `${prefix}.self_attn.v_proj.weight`, shape: [numKvHeads * headDim, hiddenSize] },
      { name: `${prefix}.self_attn.o_proj.weight`, shape: [hiddenSize, numHeads * headDim] },
    );
    if (config.attentionBias) {
      wanted.push(
        { name: `${prefix}.self_attn.q_proj.bias`, shape: [numHeads * headDim] },
        { name: `${prefix}.self_attn.k_proj.bias`, shape: [numKvHeads * headDim] },
        { name: `${prefix}.self_attn.v_proj.bias`, shape: [numKvHeads * headDim] },
      );
    }
    if (hasOutputBias(config)) wanted.push({ name: `${prefix}.self_attn.o_proj.bias`, shape: [hiddenSize] });
    if (config.qkNorm) {
      wanted.push(
        { name: `${prefix}.self_attn.q_norm.weight`, shape: [headDim] },
        { name: `${prefix}.self_attn.k_norm.weight`, shape: [headDim] },
      );
    }
    wanted.push(
      { name: `${prefix}.post_attention_layernorm.weight`, shape: [hiddenSize] },
      { name: `${prefix}.mlp.gate_proj.weight`, shape: [intermediateSize, hiddenSize] },
      { name: `${prefix}.mlp.up_proj.weight`, shape: [intermediateSize, hiddenSize] },
      { name: `${prefix}.mlp.down_proj.weight`, shape: [hiddenSize, intermediateSize] },
    );
  }
  wanted.push({ name: 'model.norm.weight', shape: [hiddenSize] });
  if (!config.tieWordEmbeddings) wanted.push({ name: 'lm_head.weight', shape: [vocabSize, hiddenSize] });
  return wanted;
}

/** Llama's `attention_bias` also puts a bias on o_proj; Qwen2's q/k/v biases do not. */
export function hasOutputBias(config: ModelConfig): boolean {
  return config.family === 'llama' && config.attentionBias;
}

/** Options for {@link loadCheckpointWeights}. */
export interface LoadWeightsOptions {
  /** Hears the bytes read so far out of the total (for a progress bar). */
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/** Reads the weights the config implies from a checkpoint folder's safetensors, as float32. */
export async function loadCheckpointWeights(
  modelDir: string,
  config: ModelConfig,
  options: LoadWeightsOptions = {},
): Promise<ModelWeights> {
  const { indexFile, entries } = await readSafetensorsIndex(modelDir);
  return readSafetensorsTensors(entries, expectedWeights(config), {
    indexFile,
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
  });
}

/**
 * A runner's weights: the checkpoint's (`safetensors`, with a progress bar on a terminal unless `onProgress` is
 * given) or seeded random ones from the config alone (`dummy`).
 */
export async function loadModelWeights(
  modelDir: string,
  config: ModelConfig,
  options: { loadFormat?: 'safetensors' | 'dummy'; seed?: number; onProgress?: (loadedBytes: number, totalBytes: number) => void },
): Promise<ModelWeights> {
  if (options.loadFormat === 'dummy') return dummyWeights(config, options.seed);
  const onProgress = options.onProgress ?? weightLoadingProgressBar('Loading weights');
  return loadCheckpointWeights(modelDir, config, onProgress === undefined ? {} : { onProgress });
}

/**
 * Seeded random weights of the config's shapes (the "dummy" load format, as vLLM's): realistic sizes for benchmarks
 * without downloading a checkpoint. Matrices are uniform in ±1/√fan-in so activations stay in range; norms are 1.
 */
export function dummyWeights(config: ModelConfig, seed = 0): ModelWeights {
  const random = mulberry32(seed);
  const weights = new Map<string, WeightTensor>();
  for (const { name, shape } of expectedWeights(config)) {
    const size = shape.reduce((total, dim) => total * dim, 1);
    const data = new Float32Array(size);
    if (name.endsWith('norm.weight')) {
      data.fill(1);
    } else if (!name.endsWith('.bias')) {
      const scale = 2 / Math.sqrt(shape[shape.length - 1]!);
      for (let index = 0; index < size; index += 1) data[index] = (random() - 0.5) * scale;
    }
    weights.set(name, { shape, data });
  }
  return weights;
}

/** A small, fast, seedable generator: the dummy weights must be the same on every run. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

import type { ModelConfig } from './model-config';
import { quantizableColumns, type Quantization, type QuantizedFormat } from './quantization';
import { readSafetensorsIndex, readSafetensorsTensors } from './safetensors';
import {
  type FloatWeight,
  heldBytes,
  type ModelWeights,
  quantizeWeight,
  type WantedTensor,
  type WeightFormat,
  type WeightTensor,
} from './weight-tensor';

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
  /** Hears the bytes read so far out of the total (for a progress bar), as the weights are read. */
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/**
 * The weights the config implies from a checkpoint folder's safetensors, as float32. Shapes and dtypes are checked
 * now; the data is read when each weight is (see FloatWeight).
 */
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
 * The format each weight gets under `quantization`, by name:
 *
 * ```text
 *                                   int8    int4
 * q/k/v/o_proj, gate/up/down_proj   q8_0    q4_0
 * embed_tokens, lm_head             q8_0    q8_0    the largest tensors of small models; kept at 8 bits, as
 *                                                   llama.cpp keeps the output head wider in its 4-bit mixes
 * norms, biases, q/k norms          float32
 * ```
 *
 * Undefined: the weight stays float32. A weight whose rows are not whole blocks stays float32 too (quantizeWeight).
 */
export function quantizedFormatFor(name: string, quantization: Quantization | undefined): QuantizedFormat | undefined {
  if (quantization === undefined || !name.endsWith('.weight')) return undefined;
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') return 'q8_0';
  if (/\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/.test(name)) return quantization === 'int8' ? 'q8_0' : 'q4_0';
  return undefined;
}

/** `weights` with each weight quantized when it is read, as {@link quantizedFormatFor} says. */
export function quantizeModelWeights(weights: ModelWeights, quantization: Quantization | undefined): ModelWeights {
  if (quantization === undefined) return weights;
  return new Map(
    [...weights].map(([name, tensor]) => {
      const format = quantizedFormatFor(name, quantization);
      return [name, format === undefined ? tensor : quantizeWeight(tensor, format)];
    }),
  );
}

/**
 * The format every weight of the model will be held in: `storedFormats`' quantized ones as they are (a GGUF's), the
 * rest as `quantization` makes them (see quantizedFormatFor; a weight whose rows are not whole blocks stays float32).
 */
export function plannedWeightFormats(
  config: ModelConfig,
  quantization: Quantization | undefined,
  storedFormats?: ReadonlyMap<string, WeightFormat>,
): Map<string, WeightFormat> {
  const formats = new Map<string, WeightFormat>();
  for (const { name, shape } of expectedWeights(config)) {
    const stored = storedFormats?.get(name) ?? 'float32';
    const format = quantizedFormatFor(name, quantization);
    formats.set(name, stored !== 'float32' ? stored : format !== undefined && shape.length === 2 && quantizableColumns(shape[1]!) ? format : 'float32');
  }
  return formats;
}

/** Bytes of the weights as held in the given formats: float32, or codes plus float32 scales. */
export function plannedWeightBytes(config: ModelConfig, formats: ReadonlyMap<string, WeightFormat>): number {
  return expectedWeights(config).reduce((sum, { name, shape }) => sum + heldBytes({ format: formats.get(name) ?? 'float32', shape }), 0);
}

/**
 * Seeded random weights of the config's shapes (the "dummy" load format, as vLLM's): realistic sizes for benchmarks
 * without downloading a checkpoint. Matrices are uniform in ±1/√fan-in so activations stay in range; norms are 1,
 * biases 0. The values come from one seeded stream over every matrix in {@link expectedWeights}' order; each
 * weight is made when it is read, jumping straight to its place in the stream, so they need not all be in memory.
 */
export function dummyWeights(config: ModelConfig, seed = 0): ModelWeights {
  const weights = new Map<string, WeightTensor>();
  let draws = 0;
  for (const { name, shape } of expectedWeights(config)) {
    const size = shape.reduce((total, dim) => total * dim, 1);
    const columns = shape[shape.length - 1]!;
    const rowSize = shape.length === 1 ? 1 : columns;
    const rows = size / rowSize;
    const random = !name.endsWith('norm.weight') && !name.endsWith('.bias');
    const firstDraw = draws;
    if (random) draws += size;
    const tensor: FloatWeight = {
      format: 'float32',
      shape,
      read: (range) => {
        const start = range?.start ?? 0;
        const data = new Float32Array(((range?.end ?? rows) - start) * rowSize);
        if (name.endsWith('norm.weight')) {
          data.fill(1);
        } else if (random) {
          const next = mulberry32(seed, firstDraw + start * rowSize);
          const scale = 2 / Math.sqrt(columns);
          for (let index = 0; index < data.length; index += 1) data[index] = (next() - 0.5) * scale;
        }
        return Promise.resolve(data);
      },
    };
    weights.set(name, tensor);
  }
  return weights;
}

/**
 * A small, fast, seedable generator: the dummy weights must be the same on every run. `skip` starts it at that
 * draw of the stream: the state advances by a constant each draw, so the jump is one multiplication.
 */
function mulberry32(seed: number, skip = 0): () => number {
  let state = (seed + Math.imul(skip % 2 ** 32, 0x6d2b79f5)) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

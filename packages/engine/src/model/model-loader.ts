import { isGgufPath, readGgufHeader, ggufWeights, type GgufConversion } from './gguf';
import type { ModelConfig } from './model-config';
import { dummyWeights, loadCheckpointWeights, quantizeModelWeights } from './model-weights';
import type { Quantization } from './quantization';
import type { ModelWeights, WeightFormat } from './weight-tensor';
import { weightLoadingProgressBar } from '../progress-bar';

/** How a runner loads its weights. */
export interface ModelWeightsOptions {
  /** `safetensors` (default) reads the model's weights; `dummy` makes seeded random weights from the config alone. */
  loadFormat?: 'safetensors' | 'dummy';
  seed?: number;
  /** Quantizes the float weights as they are read (see quantizeModelWeights). */
  quantization?: Quantization;
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/**
 * A runner's weights: the model's (a checkpoint folder's safetensors or a GGUF file's tensors, with a progress bar
 * on a terminal unless `onProgress` is given) or seeded random ones from the config alone (`dummy`), float weights
 * quantized as `quantization` says. Nothing is read yet: each weight is read when the weight file is written.
 */
export async function loadModelWeights(modelPath: string, config: ModelConfig, options: ModelWeightsOptions): Promise<ModelWeights> {
  if (options.loadFormat === 'dummy') return quantizeModelWeights(dummyWeights(config, options.seed), options.quantization);
  const onProgress = options.onProgress ?? weightLoadingProgressBar('Loading weights');
  const progress = onProgress === undefined ? {} : { onProgress };
  const weights = isGgufPath(modelPath)
    ? ggufWeights(await readGgufHeader(modelPath), config, progress).weights
    : await loadCheckpointWeights(modelPath, config, progress);
  return quantizeModelWeights(weights, options.quantization);
}

/** The tensors of a GGUF model that load at another precision than stored (K-quants), for the start-up log. */
export async function ggufConversions(modelPath: string, config: ModelConfig): Promise<readonly GgufConversion[]> {
  return ggufWeights(await readGgufHeader(modelPath), config).conversions;
}

/**
 * How a GGUF model's tensors load, from one read of its header: their formats by Hugging Face name, and the tensors
 * that load at another precision than stored (K-quants). Undefined for a checkpoint folder.
 */
export async function ggufLoadPlan(
  modelPath: string,
  config: ModelConfig,
): Promise<{ readonly formats: Map<string, WeightFormat>; readonly conversions: readonly GgufConversion[] } | undefined> {
  if (!isGgufPath(modelPath)) return undefined;
  const { weights, conversions } = ggufWeights(await readGgufHeader(modelPath), config);
  return { formats: new Map([...weights].map(([name, tensor]) => [name, tensor.format])), conversions };
}

/** The formats a GGUF model's tensors load in, by Hugging Face name; undefined for a checkpoint folder. */
export async function storedWeightFormats(modelPath: string, config: ModelConfig): Promise<Map<string, WeightFormat> | undefined> {
  return (await ggufLoadPlan(modelPath, config))?.formats;
}

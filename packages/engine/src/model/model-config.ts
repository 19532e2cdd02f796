import { join } from 'node:path';
import { GgufError, ModelConfigError } from '../errors';
import { readJsonFile } from '../json-file';
import { ggufConfigJson, ggufKeyOf, isGgufPath, readGgufHeader } from './gguf';

/** The architectures (config.json `architectures[0]`) the engine runs, and the family each belongs to. */
const supportedArchitectures = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
} as const;

/** The `model_type` values of the supported architectures; another one is refused even if `architectures` matches. */
const supportedModelTypes = ['llama', 'mistral', 'qwen2', 'qwen3'] as const;

export type LayerType = 'full_attention' | 'sliding_attention';

export type ModelFamily = (typeof supportedArchitectures)[keyof typeof supportedArchitectures];

/** What the engine needs from a Hugging Face config.json, with every default filled in. */
export interface ModelConfig {
  architecture: keyof typeof supportedArchitectures;
  family: ModelFamily;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2, or Llama's `attention_bias`). */
  attentionBias: boolean;
  /** Per-head RMSNorm on queries and keys (Qwen3). */
  qkNorm: boolean;
  /** The sliding attention window in tokens, or undefined for full attention. */
  slidingWindow: number | undefined;
  /**
   * Per layer, `full_attention` or `sliding_attention`, when the config says (`layer_types`, or Qwen2/Qwen3's
   * `max_window_layers`: layers from that index on slide); undefined means every layer uses `slidingWindow`.
   */
  layerTypes: readonly LayerType[] | undefined;
  /** `rope_theta` and `rope_scaling`, or the newer `rope_parameters`, as written in the file. */
  ropeTheta: number;
  ropeScaling: Readonly<Record<string, unknown>> | undefined;
  bosTokenId: number | undefined;
  eosTokenIds: readonly number[];
  /** The dtype the weights are stored in (`torch_dtype` or `dtype`), if the file says. */
  dtype: string | undefined;
}

/**
 * Reads `config.json` from a checkpoint folder, or the metadata of a GGUF file (a path ending in `.gguf`), which
 * becomes the config.json it stands for and is validated the same way.
 */
export async function loadModelConfig(modelDir: string): Promise<ModelConfig> {
  if (isGgufPath(modelDir)) {
    const header = await readGgufHeader(modelDir);
    const raw = ggufConfigJson(header);
    try {
      return parseModelConfig(raw, modelDir);
    } catch (error) {
      if (!(error instanceof ModelConfigError)) throw error;
      const reason = error.message.startsWith(`${modelDir}: `) ? error.message.slice(modelDir.length + 2) : error.message;
      throw new GgufError('gguf_metadata_invalid', modelDir, `gives an invalid config: ${reason}`, {
        key: ggufKeyOf(String(raw.model_type), error.field),
        cause: error,
      });
    }
  }
  const file = join(modelDir, 'config.json');
  const raw = await readJsonFile(file, {
    optional: false,
    error: (problem, cause) =>
      new ModelConfigError(file, problem === 'unreadable' ? 'cannot read the checkpoint config' : `is not valid JSON (${(cause as Error).message})`, {
        cause,
      }),
  });
  return parseModelConfig(raw, file);
}

/** Normalizes a parsed config.json; `file` names it in errors. */
export function parseModelConfig(raw: unknown, file = 'config.json'): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ModelConfigError(file, 'must hold a JSON object');
  }
  const config = raw as Record<string, unknown>;
  const architectures = config.architectures;
  const architecture = Array.isArray(architectures) ? architectures[0] : undefined;
  if (typeof architecture !== 'string' || !(architecture in supportedArchitectures)) {
    throw new ModelConfigError(
      file,
      `unsupported architecture ${JSON.stringify(architecture ?? null)}; supported: ${Object.keys(supportedArchitectures).join(', ')}`,
      { field: 'architectures' },
    );
  }
  const modelType = config.model_type;
  if (modelType !== undefined && !(supportedModelTypes as readonly unknown[]).includes(modelType)) {
    throw new ModelConfigError(
      file,
      `unsupported model_type ${JSON.stringify(modelType)}; supported: ${supportedModelTypes.join(', ')}`,
      { field: 'model_type' },
    );
  }
  const supported = architecture as keyof typeof supportedArchitectures;
  const family = supportedArchitectures[supported];

  const integer = (field: string, fallback?: number): number => {
    const value = config[field] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new ModelConfigError(file, `${field} must be a positive integer, got ${JSON.stringify(value ?? null)}`, {
        field,
      });
    }
    return value;
  };
  const number = (field: string, fallback: number): number => {
    const value = config[field] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new ModelConfigError(file, `${field} must be a positive number, got ${JSON.stringify(value)}`, { field });
    }
    return value;
  };

  const hiddenSize = integer('hidden_size');
  const numHeads = integer('num_attention_heads');
  const numKvHeads = integer('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelConfigError(
      file,
      `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
      { field: 'num_key_value_heads' },
    );
  }
  const headDimFallback = hiddenSize % numHeads === 0 ? hiddenSize / numHeads : undefined;
  const headDim = integer('head_dim', headDimFallback);

  const ropeParameters = asRecord(config.rope_parameters);
  const ropeScaling = asRecord(config.rope_scaling) ?? withoutTheta(ropeParameters);
  const ropeTheta =
    typeof config.rope_theta === 'number'
      ? config.rope_theta
      : typeof ropeParameters?.rope_theta === 'number'
        ? ropeParameters.rope_theta
        : 10000;

  const useSlidingWindow = config.use_sliding_window !== false;
  const slidingWindowValue = config.sliding_window;
  const slidingWindow =
    useSlidingWindow && typeof slidingWindowValue === 'number' && slidingWindowValue > 0 ? slidingWindowValue : undefined;

  const numLayers = integer('num_hidden_layers');
  let layerTypes: LayerType[] | undefined;
  if (Array.isArray(config.layer_types)) {
    layerTypes = config.layer_types.map((type, layer) => {
      if (type !== 'full_attention' && type !== 'sliding_attention') {
        throw new ModelConfigError(file, `layer_types[${layer}] must be full_attention or sliding_attention`, {
          field: 'layer_types',
        });
      }
      return type;
    });
  } else if (slidingWindow !== undefined && family !== 'llama' && typeof config.max_window_layers === 'number') {
    const maxWindowLayers = config.max_window_layers;
    layerTypes = Array.from({ length: numLayers }, (_, layer) =>
      layer >= maxWindowLayers ? 'sliding_attention' : 'full_attention',
    );
  }

  const eos = config.eos_token_id;
  const eosTokenIds = typeof eos === 'number' ? [eos] : Array.isArray(eos) ? eos.filter(isInteger) : [];

  return {
    architecture: supported,
    family,
    vocabSize: integer('vocab_size'),
    hiddenSize,
    intermediateSize: integer('intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: number('rms_norm_eps', 1e-6),
    maxPositionEmbeddings: integer('max_position_embeddings', 2048),
    tieWordEmbeddings: config.tie_word_embeddings === true,
    attentionBias: family === 'qwen2' || config.attention_bias === true,
    qkNorm: family === 'qwen3',
    slidingWindow,
    layerTypes,
    ropeTheta,
    ropeScaling,
    bosTokenId: isInteger(config.bos_token_id) ? config.bos_token_id : undefined,
    eosTokenIds,
    dtype: typeof config.torch_dtype === 'string' ? config.torch_dtype : typeof config.dtype === 'string' ? config.dtype : undefined,
  };
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function withoutTheta(parameters: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (parameters === undefined) return undefined;
  const { rope_theta: _theta, ...rest } = parameters;
  return rest.rope_type === undefined || rest.rope_type === 'default' ? undefined : rest;
}

function isInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value);
}

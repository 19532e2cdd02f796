import { formatBytes, parseMemorySize, planKvCache, type KvCachePlan } from '@pagoda/kv-cache';
import { PartitionError, validateParallelConfig } from '@pagoda/parallel';
import { freemem } from 'node:os';
import { PagodaEngineError } from '../errors';
import type { ExecutionProvider } from '../execution-provider';
import type { ModelConfig } from '../model-config';
import { modelShape } from '../parallel/rank-weights';

/** Deployment settings, named as vLLM's engine arguments in camelCase. Every one is optional. */
export interface EngineOptions {
  /** `safetensors` (default) reads the checkpoint's weights; `dummy` makes seeded random ones from config.json. */
  loadFormat?: 'safetensors' | 'dummy';
  /** `cpu` (default), `cuda` or `webgpu`. */
  device?: ExecutionProvider;
  /** The longest sequence (prompt + output); default the model's `max_position_embeddings`. */
  maxModelLen?: number;
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** Automatic prefix caching (default on). */
  enablePrefixCaching?: boolean;
  /** Most requests running at once (default 256). */
  maxNumSeqs?: number;
  /** Most tokens computed per step (default 2048). */
  maxNumBatchedTokens?: number;
  /**
   * The KV cache's own size on the CPU: bytes or a string with a unit (`4GiB`). Default: 4 GiB or a quarter of free
   * memory, whichever is less. Under tensor or pipeline parallelism, the size of all ranks' shards together.
   */
  kvCacheMemory?: number | string;
  /** On a GPU, the fraction of device memory Pagoda may use (default 0.9). */
  gpuMemoryUtilization?: number;
  /** Seed of the dummy weights (default 0). */
  seed?: number;
  /**
   * ONNX Runtime intra-op threads (default: one per core); with tensor or pipeline parallelism, of each rank
   * (default: the cores divided by the ranks, at least 1).
   */
  intraOpNumThreads?: number;
  /** `fcfs` (default) or `priority`. */
  schedulingPolicy?: 'fcfs' | 'priority';
  /** Caps one request's share of a step's tokens (default 0: no cap). */
  longPrefillTokenThreshold?: number;
  /** The most top logprobs a request may ask for (default 20). */
  maxLogprobs?: number;
  /** `auto` (default): generation_config.json supplies sampling defaults; `vllm`: vLLM's own defaults only. */
  generationConfig?: 'auto' | 'vllm';
  /**
   * Ranks each layer's heads and MLP are split over (Megatron layout, one worker thread per rank on the CPU); must
   * divide the attention heads, the KV heads (or be a multiple of them: they are then replicated) and the MLP width.
   */
  tensorParallelSize?: number;
  /** Stages the layers are split over, contiguous ranges; at most the number of layers. */
  pipelineParallelSize?: number;
}

/** An engine option out of range; `param` is the option's name as the CLI and vLLM spell it. */
export class EngineOptionsError extends PagodaEngineError {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super('invalid_engine_option', message);
    this.name = 'EngineOptionsError';
  }
}

export interface ResolvedEngineOptions {
  loadFormat: 'safetensors' | 'dummy';
  device: ExecutionProvider;
  maxModelLen: number;
  blockSize: number;
  enablePrefixCaching: boolean;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  seed: number;
  intraOpNumThreads: number | undefined;
  schedulingPolicy: 'fcfs' | 'priority';
  longPrefillTokenThreshold: number;
  maxLogprobs: number;
  generationConfig: 'auto' | 'vllm';
  tensorParallelSize: number;
  pipelineParallelSize: number;
  kvCache: KvCachePlan;
}

/** The KV pools on the CPU are float32. */
const cpuKvDtypeBytes = 4;

/** Validates the options against the model and plans the KV cache; every error names the option. */
export function resolveEngineOptions(options: EngineOptions, model: ModelConfig): ResolvedEngineOptions {
  const positiveInteger = (param: string, value: number | undefined, fallback: number): number => {
    const resolved = value ?? fallback;
    if (!Number.isInteger(resolved) || resolved < 1) {
      throw new EngineOptionsError(param, `${param} must be a positive integer, got ${JSON.stringify(value)}`);
    }
    return resolved;
  };
  const oneOf = <T extends string>(param: string, value: T | undefined, allowed: readonly T[]): T => {
    const resolved = value ?? allowed[0]!;
    if (!allowed.includes(resolved)) {
      throw new EngineOptionsError(param, `${param} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
    }
    return resolved;
  };

  const device = oneOf('device', options.device, ['cpu', 'cuda', 'webgpu'] as const);
  const maxModelLen = positiveInteger('max_model_len', options.maxModelLen, model.maxPositionEmbeddings);
  if (maxModelLen > model.maxPositionEmbeddings) {
    throw new EngineOptionsError(
      'max_model_len',
      `max_model_len (${maxModelLen}) is larger than the model's max_position_embeddings (${model.maxPositionEmbeddings})`,
    );
  }
  const blockSize = positiveInteger('block_size', options.blockSize, 16);
  const maxNumSeqs = positiveInteger('max_num_seqs', options.maxNumSeqs, 256);
  const maxNumBatchedTokens = positiveInteger('max_num_batched_tokens', options.maxNumBatchedTokens, 2048);
  const tensorParallelSize = positiveInteger('tensor_parallel_size', options.tensorParallelSize, 1);
  const pipelineParallelSize = positiveInteger('pipeline_parallel_size', options.pipelineParallelSize, 1);
  try {
    validateParallelConfig(modelShape(model), { tensorParallelSize, pipelineParallelSize });
  } catch (error) {
    if (!PartitionError.isInstance(error)) throw error;
    throw new EngineOptionsError(error.param ?? 'tensor_parallel_size', error.message);
  }
  const gpuMemoryUtilization = options.gpuMemoryUtilization ?? 0.9;
  if (!(gpuMemoryUtilization > 0 && gpuMemoryUtilization <= 1)) {
    throw new EngineOptionsError('gpu_memory_utilization', `gpu_memory_utilization must be in (0, 1], got ${JSON.stringify(options.gpuMemoryUtilization)}`);
  }
  if (device !== 'cpu') {
    throw new EngineOptionsError('device', `device ${device} needs the GPU model runner, which this build does not have yet; use device cpu`);
  }
  let kvCacheMemoryBytes: number;
  try {
    kvCacheMemoryBytes =
      options.kvCacheMemory === undefined ? Math.min(4 * 2 ** 30, Math.floor(freemem() / 4)) : parseMemorySize(options.kvCacheMemory);
  } catch (error) {
    throw new EngineOptionsError('kv_cache_memory', (error as Error).message);
  }
  let kvCache: KvCachePlan;
  try {
    kvCache = planKvCache({
      kvCacheMemoryBytes,
      numLayers: model.numLayers,
      // The budget is the whole cache's, over every rank: KV heads replicated over tensor-parallel ranks count once
      // per copy. Each rank holds numBlocks blocks of its own KV heads of its own layers.
      numKvHeads: Math.max(model.numKvHeads, tensorParallelSize),
      headDim: model.headDim,
      dtypeBytes: cpuKvDtypeBytes,
      blockSize,
      maxModelLen,
      maxNumSeqs,
    });
  } catch (error) {
    throw new EngineOptionsError(
      'kv_cache_memory',
      `${(error as Error).message} (the KV cache gets ${formatBytes(kvCacheMemoryBytes)}${options.kvCacheMemory === undefined ? ' by default' : ''})`,
    );
  }
  const intraOpNumThreads = options.intraOpNumThreads;
  if (intraOpNumThreads !== undefined) positiveInteger('intra_op_num_threads', intraOpNumThreads, 1);
  const longPrefillTokenThreshold = options.longPrefillTokenThreshold ?? 0;
  if (!Number.isInteger(longPrefillTokenThreshold) || longPrefillTokenThreshold < 0) {
    throw new EngineOptionsError('long_prefill_token_threshold', `long_prefill_token_threshold must be a non-negative integer, got ${longPrefillTokenThreshold}`);
  }
  const maxLogprobs = options.maxLogprobs ?? 20;
  if (!Number.isInteger(maxLogprobs) || maxLogprobs < 0) {
    throw new EngineOptionsError('max_logprobs', `max_logprobs must be a non-negative integer, got ${maxLogprobs}`);
  }
  return {
    loadFormat: oneOf('load_format', options.loadFormat, ['safetensors', 'dummy'] as const),
    device,
    maxModelLen,
    blockSize,
    enablePrefixCaching: options.enablePrefixCaching ?? true,
    maxNumSeqs,
    maxNumBatchedTokens,
    seed: options.seed ?? 0,
    intraOpNumThreads,
    schedulingPolicy: oneOf('scheduling_policy', options.schedulingPolicy, ['fcfs', 'priority'] as const),
    longPrefillTokenThreshold,
    maxLogprobs,
    generationConfig: oneOf('generation_config', options.generationConfig, ['auto', 'vllm'] as const),
    tensorParallelSize,
    pipelineParallelSize,
    kvCache,
  };
}

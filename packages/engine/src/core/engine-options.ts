import { formatBytes, parseMemorySize, planKvCache, type KvCachePlan } from '@pagoda/kv-cache';
import { PartitionError, validateParallelConfig } from '@pagoda/parallel';
import { freemem } from 'node:os';
import { PagodaEngineError } from '../errors';
import { defaultAccuracyLevel } from '../model/quantization';
import { checkExecutionProvider, type ExecutionProvider } from '../execution-provider';
import type { ModelConfig } from '../model/model-config';
import { plannedWeightFormats } from '../model/model-weights';
import type { Quantization } from '../model/quantization';
import type { WeightFormat } from '../model/weight-tensor';
import { defaultGpuBlockSize, type GpuProbe, nvidiaSmiProbe, pagedBlockSizeProblem, selectDevice } from '../paged/gpu-device';
import { metadataEntriesFor } from '../paged/paged-batch';
import { onnxRuntimeVersion } from '../runtime';
import { modelShape, quantizedShardProblem } from '../parallel/rank-weights';
import type { PoolerConfig, PoolerConfigInput } from '../model/pooler-config';
import { type ReasoningMarkers, type ReasoningParserName, reasoningParsers } from '../structured-output/reasoning';

/** Deployment settings, named as vLLM's engine arguments in camelCase. Every one is optional. */
export interface EngineOptions {
  /** `safetensors` (default) reads the checkpoint's weights; `dummy` makes seeded random ones from config.json. */
  loadFormat?: 'safetensors' | 'dummy';
  /**
   * `cpu` (default), `cuda` or `webgpu`. A GPU runs the PagedAttention graph with the KV cache on the device, on one
   * GPU (tensor and pipeline parallelism are CPU-only).
   */
  device?: ExecutionProvider;
  /**
   * Weights, activations and KV cache: `auto` (default) is float32 on the CPU and float16 on a GPU; `bfloat16` is
   * CUDA only.
   */
  dtype?: 'auto' | 'float32' | 'float16' | 'bfloat16';
  /**
   * `auto` (default): the device's runner. `paged-reference`: on the CPU, the GPU runner's graph with PagedAttention
   * written in standard operators (float32, slow): for checking the GPU path without a GPU.
   */
  modelRunner?: 'auto' | 'paged-reference';
  /** The longest sequence (prompt + output); default the model's `max_position_embeddings`. */
  maxModelLen?: number;
  /**
   * Tokens per KV block. Default 16; on CUDA the smallest block ONNX Runtime's paged FlashAttention takes (256 for
   * head_dim <= 64, 128 for head_dim <= 128, on sm 8.0 and newer). A GPU needs a power of two of at least 16.
   */
  blockSize?: number;
  /** Automatic prefix caching (default on). */
  enablePrefixCaching?: boolean;
  /** Most requests running at once (default 256). */
  maxNumSeqs?: number;
  /** Most tokens computed per step (default 2048). */
  maxNumBatchedTokens?: number;
  /**
   * The KV cache's own size: bytes or a string with a unit (`4GiB`). On the CPU the default is 4 GiB or a quarter
   * of free memory, whichever is less; under tensor or pipeline parallelism, the size of all ranks' shards together.
   * On a GPU it replaces the profiled plan (gpu_memory_utilization), and nvidia-smi is then not needed.
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
  /**
   * AsyncLLM's worker processes that render chat templates and tokenize, off the event loop (default 2; vLLM's
   * `tokenizer_pool_size`). Each holds its own copy of the tokenizer.
   */
  tokenizerPoolSize?: number;
  /** The most one chat-template rendering or tokenization may take, in milliseconds (default 10,000). */
  tokenizerPoolTimeoutMs?: number;
  /** Each tokenizer worker's JavaScript heap limit, in MiB (default 1024). */
  tokenizerPoolMaxHeapMb?: number;
  /**
   * vLLM's `--reasoning-parser`: the model thinks between `<think>` and `</think>` (`qwen3`, `deepseek_r1`), and a
   * request's structured-output constraint starts only after `</think>`, in the prompt or the output.
   */
  reasoningParser?: ReasoningParserName;
  /** vLLM's `--structured-outputs-config`. */
  structuredOutputsConfig?: {
    /** JSON without free whitespace between its elements, so a model cannot pad it forever (default false). */
    disableAnyWhitespace?: boolean;
  };
  /**
   * Weight-only quantization of the float weights, as they load: `int8` (llama.cpp's Q8_0: blocks of 32 along the
   * input dimension, one float16-exact scale each) or `int4` (Q4_0 for the projections, Q8_0 for the embedding and
   * the output head), run by ONNX Runtime's `MatMulNBits`. A GGUF model's quantized tensors load as they are stored.
   */
  quantization?: Quantization;
  /**
   * MatMulNBits' `accuracy_level` for quantized weights: 4 (default) quantizes activations to int8 per block, as
   * llama.cpp's CPU kernels do; 1 computes in float32. See the engine README for the measurement behind the default.
   */
  accuracyLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * The Hugging Face folder the tokenizer (tokenizer.json, tokenizer_config.json) and generation_config.json come
   * from; by default the model's own folder. Required for a GGUF model, as vLLM requires `--tokenizer` for GGUF.
   */
  tokenizer?: string;
  /**
   * vLLM's `runner`: `generate` (default; `auto` is the same) samples tokens; `pooling` serves embeddings only, one
   * vector per prompt pooled from the final norm's hidden states (AsyncLLM.embed, the server's /v1/embeddings).
   */
  runner?: 'auto' | 'generate' | 'pooling';
  /**
   * vLLM's `pooler_config`, field by field over what the checkpoint's sentence-transformers files say (modules.json
   * and its Pooling module's config.json); the default is the last token, normalized.
   */
  poolerConfig?: PoolerConfigInput;
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
  dtype: 'float32' | 'float16' | 'bfloat16';
  modelRunner: 'auto' | 'paged-reference';
  gpuMemoryUtilization: number;
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
  tokenizerPoolSize: number;
  tokenizerPoolTimeoutMs: number;
  tokenizerPoolMaxHeapMb: number;
  reasoningParser: ReasoningParserName | undefined;
  /** The reasoning parser's marker ids in this model's vocabulary; filled in with the tokenizer (`loadModelContext`). */
  reasoningMarkers: ReasoningMarkers | undefined;
  structuredOutputsConfig: { disableAnyWhitespace: boolean };
  quantization: Quantization | undefined;
  accuracyLevel: number;
  tokenizer: string | undefined;
  runner: 'generate' | 'pooling';
  /** With runner `pooling`: how hidden states become one vector; filled in with the checkpoint (`loadModelContext`). */
  pooler: PoolerConfig | undefined;
  poolerConfig: PoolerConfigInput | undefined;
  /**
   * The KV cache's plan. On a GPU without kvCacheMemory it is made when the engine core starts (from a profiling
   * run) and is undefined until then; LLM and AsyncLLM fill it in once they are ready.
   */
  kvCache: KvCachePlan | undefined;
}

/**
 * Validates the options against the model and plans the KV cache; every error names the option. On CUDA without a
 * block size, `probe` (default nvidia-smi) tells the device's compute capability. `storedFormats` are the formats a
 * GGUF model's tensors load in (quantized ones keep theirs), by Hugging Face name.
 */
export function resolveEngineOptions(
  options: EngineOptions,
  model: ModelConfig,
  probe: () => GpuProbe = () => nvidiaSmiProbe(),
  storedFormats?: ReadonlyMap<string, WeightFormat>,
): ResolvedEngineOptions {
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
  const modelRunner = oneOf('model_runner', options.modelRunner, ['auto', 'paged-reference'] as const);
  const paged = device !== 'cpu' || modelRunner === 'paged-reference';
  if (modelRunner === 'paged-reference' && device !== 'cpu') {
    throw new EngineOptionsError('model_runner', `model_runner paged-reference runs on the CPU; with device ${device} the real PagedAttention runs`);
  }
  const dtype = resolveDtype(options.dtype, device);
  if (device !== 'cpu') {
    try {
      checkExecutionProvider(device);
    } catch (error) {
      throw new EngineOptionsError('device', (error as Error).message);
    }
  }
  // Only CUDA without a block size asks the device (nvidia-smi) for its default.
  const defaultBlockSize = device === 'cuda' && options.blockSize === undefined ? cudaDefaultBlockSize(model, options, probe) : 16;
  const blockSize = positiveInteger('block_size', options.blockSize, defaultBlockSize);
  const blockSizeProblem = paged ? pagedBlockSizeProblem(blockSize) : undefined;
  if (blockSizeProblem !== undefined) throw new EngineOptionsError('block_size', blockSizeProblem);
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
  const quantization = options.quantization === undefined ? undefined : oneOf('quantization', options.quantization, ['int8', 'int4'] as const);
  const accuracyLevel = options.accuracyLevel ?? defaultAccuracyLevel;
  if (!Number.isInteger(accuracyLevel) || accuracyLevel < 0 || accuracyLevel > 4) {
    throw new EngineOptionsError('accuracy_level', `accuracy_level must be an integer in [0, 4], got ${JSON.stringify(options.accuracyLevel)}`);
  }
  const formats = plannedWeightFormats(model, quantization, storedFormats);
  const shardProblem = quantizedShardProblem(model, tensorParallelSize, (name) => formats.get(name) ?? 'float32');
  if (shardProblem !== undefined) throw new EngineOptionsError('tensor_parallel_size', shardProblem);
  if (device !== 'cpu' && maxNumSeqs > 256 && metadataEntriesFor(onnxRuntimeVersion()) === 2) {
    // ONNX Runtime's own source records that PagedAttention before 1.30 computed wrong key offsets past 256 sequences.
    throw new EngineOptionsError(
      'max_num_seqs',
      `max_num_seqs ${maxNumSeqs} is more than the 256 sequences PagedAttention handles correctly in onnxruntime ${onnxRuntimeVersion()}; use 256 or fewer, or onnxruntime 1.30`,
    );
  }
  if (paged && tensorParallelSize * pipelineParallelSize > 1) {
    throw new EngineOptionsError(
      tensorParallelSize > 1 ? 'tensor_parallel_size' : 'pipeline_parallel_size',
      `tensor and pipeline parallelism run on the CPU only; the ${device === 'cpu' ? 'paged reference runner' : `${device} runner`} uses one device`,
    );
  }
  const gpuMemoryUtilization = options.gpuMemoryUtilization ?? 0.9;
  if (!(gpuMemoryUtilization > 0 && gpuMemoryUtilization <= 1)) {
    throw new EngineOptionsError('gpu_memory_utilization', `gpu_memory_utilization must be in (0, 1], got ${JSON.stringify(options.gpuMemoryUtilization)}`);
  }
  let kvCacheMemoryBytes: number | undefined;
  try {
    kvCacheMemoryBytes =
      options.kvCacheMemory !== undefined
        ? parseMemorySize(options.kvCacheMemory)
        : device === 'cpu'
          ? Math.min(4 * 2 ** 30, Math.floor(freemem() / 4))
          : undefined;
  } catch (error) {
    throw new EngineOptionsError('kv_cache_memory', (error as Error).message);
  }
  let kvCache: KvCachePlan | undefined;
  if (kvCacheMemoryBytes !== undefined) {
    try {
      kvCache = planKvCache({
        kvCacheMemoryBytes,
        numLayers: model.numLayers,
        // The budget is the whole cache's, over every rank: KV heads replicated over tensor-parallel ranks count once
        // per copy. Each rank holds numBlocks blocks of its own KV heads of its own layers.
        numKvHeads: Math.max(model.numKvHeads, tensorParallelSize),
        headDim: model.headDim,
        dtypeBytes: dtype === 'float32' ? 4 : 2,
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
  const tokenizerPoolSize = positiveInteger('tokenizer_pool_size', options.tokenizerPoolSize, 2);
  const tokenizerPoolTimeoutMs = positiveInteger('tokenizer_pool_timeout_ms', options.tokenizerPoolTimeoutMs, 10_000);
  const tokenizerPoolMaxHeapMb = positiveInteger('tokenizer_pool_max_heap_mb', options.tokenizerPoolMaxHeapMb, 1024);
  if (tokenizerPoolMaxHeapMb < 64) {
    throw new EngineOptionsError('tokenizer_pool_max_heap_mb', `tokenizer_pool_max_heap_mb must be at least 64 (MiB), got ${tokenizerPoolMaxHeapMb}`);
  }
  const reasoningParser = options.reasoningParser;
  if (reasoningParser !== undefined && !Object.hasOwn(reasoningParsers, reasoningParser)) {
    throw new EngineOptionsError(
      'reasoning_parser',
      `reasoning_parser must be one of ${Object.keys(reasoningParsers).join(', ')}, got ${JSON.stringify(reasoningParser)}`,
    );
  }
  const runner = oneOf('runner', options.runner, ['auto', 'generate', 'pooling'] as const) === 'pooling' ? 'pooling' : 'generate';
  if (runner === 'pooling' && paged) {
    throw new EngineOptionsError(
      'runner',
      `runner pooling runs on the CPU runner; the ${device === 'cpu' ? 'paged reference runner' : `${device} runner`} has no pooling output yet`,
    );
  }
  if (options.poolerConfig !== undefined && runner !== 'pooling') {
    throw new EngineOptionsError('pooler_config', 'pooler_config applies to runner pooling only');
  }
  const disableAnyWhitespace = options.structuredOutputsConfig?.disableAnyWhitespace ?? false;
  if (typeof disableAnyWhitespace !== 'boolean') {
    throw new EngineOptionsError('structured_outputs_config', `structured_outputs_config.disable_any_whitespace must be a boolean, got ${JSON.stringify(disableAnyWhitespace)}`);
  }
  return {
    loadFormat: oneOf('load_format', options.loadFormat, ['safetensors', 'dummy'] as const),
    device,
    dtype,
    modelRunner,
    gpuMemoryUtilization,
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
    tokenizerPoolSize,
    tokenizerPoolTimeoutMs,
    tokenizerPoolMaxHeapMb,
    reasoningParser,
    reasoningMarkers: undefined,
    structuredOutputsConfig: { disableAnyWhitespace },
    quantization,
    accuracyLevel,
    tokenizer: options.tokenizer,
    runner,
    pooler: undefined,
    poolerConfig: options.poolerConfig,
    kvCache,
  };
}

function resolveDtype(dtype: EngineOptions['dtype'], device: ExecutionProvider): ResolvedEngineOptions['dtype'] {
  const allowed = device === 'cpu' ? ['float32'] : device === 'webgpu' ? ['float16'] : ['float16', 'bfloat16'];
  const resolved = dtype === undefined || dtype === 'auto' ? allowed[0]! : dtype;
  if (!allowed.includes(resolved)) {
    throw new EngineOptionsError('dtype', `dtype on ${device} must be auto or ${allowed.join(' or ')}, got ${JSON.stringify(dtype)}`);
  }
  return resolved as ResolvedEngineOptions['dtype'];
}

/**
 * The block size on CUDA when none is given: the one ONNX Runtime's paged FlashAttention wants for the device
 * (nvidia-smi tells its compute capability; without nvidia-smi but with a given KV cache size, 16).
 */
function cudaDefaultBlockSize(model: ModelConfig, options: EngineOptions, probe: () => GpuProbe): number {
  try {
    return defaultGpuBlockSize(model.headDim, selectDevice(probe().devices()).computeCapability);
  } catch (error) {
    // Without nvidia-smi a given KV cache size still works; the profiled plan reports the probe's error itself.
    if (options.kvCacheMemory !== undefined) return 16;
    throw new EngineOptionsError('device', (error as Error).message);
  }
}

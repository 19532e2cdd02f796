import * as ort from 'onnxruntime-node';
import type { ModelExecutor } from '../core/engine-core';
import { ModelInputError, PagodaEngineError } from '../errors';
import { checkExecutionProvider, startSession } from '../execution-provider';
import { DataType, GraphBuilder } from '../model/graph-builder';
import { toHalfPrecision } from '../model/half';
import { loadModelConfig } from '../model/model-config';
import type { ModelConfig } from '../model/model-config';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import { loadModelWeights, type ModelWeightsOptions } from '../model/model-loader';
import { ropeFrequencies, ropeType } from '../model/rope';
import { onnxRuntimeVersion } from '../runtime';
import type { ModelFiles } from '../model/weight-file';
import type { ModelWeights } from '../model/weight-tensor';
import { layoutPagedBatch, metadataEntriesFor, type PagedBatchContext } from './paged-batch';
import { buildPagedGraph, defaultAttentionLayout, type PagedDtype, ropeCaches } from './paged-graph';

/** Where the paged runner runs: a GPU, or the CPU with the reference attention (for checking without a GPU). */
export type PagedDevice = 'cuda' | 'webgpu' | 'cpu';

/** Options of {@link PagedModelRunner}. */
export interface PagedModelRunnerOptions {
  /** Blocks in each layer's key and value pool. */
  readonly numBlocks: number;
  /** Tokens per block: a power of two of at least 16 (PagedAttention's rule). */
  readonly blockSize: number;
  readonly device: PagedDevice;
  /** Weights, activations and pools on a GPU: `float16` (default) or `bfloat16` (CUDA only). The CPU uses float32. */
  readonly dtype?: 'float16' | 'bfloat16';
  /** The longest sequence: rows of the rotary caches. */
  readonly maxModelLen: number;
  /** The CUDA device (default 0). */
  readonly deviceId?: number;
  /**
   * `fused`: packed QKV, rotary and q/k norm inside PagedAttention (the default on CUDA and the CPU when the head size
   * is a multiple of 16). `unfused`: standard operators before it (the default otherwise, and on WebGPU). The CPU
   * reference runs either.
   */
  readonly attentionLayout?: 'fused' | 'unfused';
  /**
   * The folder of the weight file and models, shared between runners built from the same weights (the profiling
   * runner and the real one), so each weight is converted and written once; its owner removes it.
   */
  readonly files?: ModelFiles;
  /** MatMulNBits' `accuracy_level` for quantized weights (default: the engine's). */
  readonly accuracyLevel?: number;
  /** ONNX Runtime's intra-op threads (CPU). */
  readonly intraOpNumThreads?: number;
  /**
   * For tests of the start-up check: the reference runner forgets what it writes into the pools, as a runtime that
   * copied initializers afresh for every run would.
   */
  readonly dropPoolWrites?: boolean;
}

/** The KV pools lost their contents between runs: the GPU runner cannot work on this ONNX Runtime. */
export class KvPoolPersistenceError extends PagodaEngineError {
  constructor(message: string) {
    super('kv_pool_not_persistent', message);
    this.name = 'KvPoolPersistenceError';
  }
}

/** What {@link PagedModelRunner.selfCheck} measured. */
export interface PoolSelfCheck {
  /** Largest difference between a decode step over the pools and the same tokens in one run, relative to the logits' scale. */
  readonly error: number;
  /** The same for a decode over blocks never written: what lost writes look like (undefined when the pool is too small to try). */
  readonly lostWritesError: number | undefined;
  readonly tolerance: number;
}

/**
 * The GPU model runner: one `com.microsoft.PagedAttention` graph over KV pools that stay on the device. On CUDA the
 * pools are zero-filled initializers of the model, which the operator writes in place; on WebGPU they are
 * `gpu-buffer` tensors made once by a helper session and fed to every run. `device: 'cpu'` runs the same graph
 * with the reference attention in float32 (the runner then keeps the pools and writes the new keys and values).
 *
 * The step interface is the CPU runner's ({@link ModelExecutor}): a mixed batch of prompt chunks and decodes runs
 * in one session run, since the operator takes sequences of any lengths.
 */
export class PagedModelRunner implements ModelExecutor {
  readonly config: ModelConfig;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly device: PagedDevice;
  readonly dtype: PagedDtype;
  /** Bytes of weights on the device (packed and converted). */
  readonly weightBytes: number;
  /** Bytes of every layer's key and value pools together. */
  readonly poolBytes: number;
  private readonly session: ort.InferenceSession;
  private readonly poolFeeds: Record<string, ort.Tensor>;
  private readonly poolArrays: Map<string, Float32Array> | undefined;
  private readonly batchContext: PagedBatchContext;
  private readonly dynamicRope: boolean;
  private readonly maxModelLen: number;
  private readonly dropPoolWrites: boolean;
  private readonly helperSessions: readonly ort.InferenceSession[];

  private constructor(fields: {
    config: ModelConfig;
    options: PagedModelRunnerOptions;
    dtype: PagedDtype;
    session: ort.InferenceSession;
    poolFeeds: Record<string, ort.Tensor>;
    poolArrays: Map<string, Float32Array> | undefined;
    weightBytes: number;
    poolBytes: number;
    dynamicRope: boolean;
    fusedAttention: boolean;
    helperSessions: readonly ort.InferenceSession[];
  }) {
    const { config, options } = fields;
    this.config = config;
    this.numBlocks = options.numBlocks;
    this.blockSize = options.blockSize;
    this.device = options.device;
    this.dtype = fields.dtype;
    this.session = fields.session;
    this.poolFeeds = fields.poolFeeds;
    this.poolArrays = fields.poolArrays;
    this.weightBytes = fields.weightBytes;
    this.poolBytes = fields.poolBytes;
    this.dynamicRope = fields.dynamicRope;
    this.maxModelLen = options.maxModelLen;
    this.dropPoolWrites = options.dropPoolWrites ?? false;
    this.helperSessions = fields.helperSessions;
    this.batchContext = {
      blockSize: options.blockSize,
      numBlocks: options.numBlocks,
      vocabSize: config.vocabSize,
      metadataEntries: metadataEntriesFor(onnxRuntimeVersion()),
      positionIds: !fields.fusedAttention,
    };
  }

  /** Loads a checkpoint folder (or dummy weights from its config.json) and builds the runner. */
  static async load(
    modelDir: string,
    options: PagedModelRunnerOptions & ModelWeightsOptions,
  ): Promise<PagedModelRunner> {
    const config = await loadModelConfig(modelDir);
    ropeType(config, `${modelDir}/config.json`);
    const weights = await loadModelWeights(modelDir, config, options);
    return PagedModelRunner.create(config, weights, options);
  }

  /** Builds the graph over loaded float32 weights and starts the session. */
  static async create(config: ModelConfig, weights: ModelWeights, options: PagedModelRunnerOptions): Promise<PagedModelRunner> {
    const { device, numBlocks, blockSize } = options;
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new ModelInputError(`numBlocks must be a positive integer, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
      throw new ModelInputError(`PagedAttention needs a block size that is a power of two of at least 16, got ${blockSize}`);
    }
    if (config.headDim % 8 !== 0) throw new ModelInputError(`PagedAttention needs a head size divisible by 8, got ${config.headDim}`);
    const dtype: PagedDtype = device === 'cpu' ? 'float32' : (options.dtype ?? 'float16');
    if (device === 'webgpu' && dtype !== 'float16') throw new ModelInputError(`WebGPU's PagedAttention is float16 only, got ${dtype}`);
    const dynamicRope = ropeType(config) === 'dynamic';
    if (dynamicRope && dtype === 'bfloat16') {
      throw new ModelInputError('dynamic RoPE feeds its rotary caches every step, and onnxruntime-node has no bfloat16 tensors; use float16');
    }
    const fusedAttention = (options.attentionLayout ?? defaultAttentionLayout(device, config.headDim)) === 'fused';
    const executionProvider = checkExecutionProvider(device);
    const graph = buildPagedGraph(config, weights, {
      dtype,
      attention: device === 'cpu' ? 'reference' : 'paged',
      fusedAttention,
      pools: device === 'cuda' ? 'initializers' : 'inputs',
      numBlocks,
      blockSize,
      ropeRows: options.maxModelLen,
      ...(options.files === undefined ? {} : { weightFile: options.files.weights }),
      ...(options.accuracyLevel === undefined ? {} : { accuracyLevel: options.accuracyLevel }),
    });
    const session = await startSession(graph, executionProvider, {
      ...(device === 'cuda' ? { provider: { name: 'cuda', deviceId: options.deviceId ?? 0 } } : {}),
      intraOpNumThreads: options.intraOpNumThreads,
      // Weights and pools straight from the device allocator: through the arena, which grows in powers of two, a
      // pool could reserve up to twice its size of a memory budget planned to the block.
      ...(device === 'cuda' ? { extra: { session: { use_device_allocator_for_initializers: '1' } } } : {}),
      ...(options.files === undefined ? {} : { files: options.files }),
    });

    const poolFeeds: Record<string, ort.Tensor> = {};
    let poolArrays: Map<string, Float32Array> | undefined;
    const helperSessions: ort.InferenceSession[] = [];
    const poolNames = Array.from({ length: config.numLayers }, (_, layer) => [`key_cache.${layer}`, `value_cache.${layer}`]).flat();
    if (device === 'cpu') {
      poolArrays = new Map();
      const size = graph.poolShape.reduce((product, dim) => product * dim, 1);
      for (const name of poolNames) {
        const array = new Float32Array(size);
        poolArrays.set(name, array);
        poolFeeds[name] = new ort.Tensor('float32', array, [...graph.poolShape]);
      }
    } else if (device === 'webgpu') {
      // A helper session makes each pool on the GPU (Expand of a zero); it must outlive the tensors it made.
      const helper = await zeroPoolSession(graph.poolShape.length);
      helperSessions.push(helper);
      const shape = new ort.Tensor('int64', BigInt64Array.from(graph.poolShape.map(BigInt)), [graph.poolShape.length]);
      for (const name of poolNames) poolFeeds[name] = (await helper.run({ shape })).pool!;
    }
    return new PagedModelRunner({
      config,
      options,
      dtype,
      session,
      poolFeeds,
      poolArrays,
      weightBytes: graph.weightBytes,
      poolBytes: graph.poolBytes,
      dynamicRope: graph.dynamicRope,
      fusedAttention,
      helperSessions,
    });
  }

  /** Runs one step: every request's new tokens in one session run; returns the requested logits rows. */
  async execute(requests: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput> {
    const batch = layoutPagedBatch(requests, this.batchContext);
    const feeds = { ...batch.feeds, ...this.poolFeeds };
    if (this.dynamicRope) Object.assign(feeds, this.dynamicRopeFeeds(batch.longestSequence));
    const results = await this.session.run(feeds);
    if (this.poolArrays !== undefined && !this.dropPoolWrites) this.writeReferencePools(results);
    const logits = results.logits!.data as Float32Array;
    return {
      logits: logits.subarray(0, batch.numLogits * this.config.vocabSize),
      vocabSize: this.config.vocabSize,
      logitsRowStart: batch.logitsRowStart,
    };
  }

  /**
   * Proves that the pools keep what PagedAttention writes into them from one run to the next: prefill a prompt in
   * one run, decode one more token over its blocks in a second, and compare with the whole sequence in one run
   * over other blocks. A decode over blocks never written shows what lost writes would look like. Throws
   * {@link KvPoolPersistenceError} when the decode does not match.
   */
  async selfCheck(): Promise<PoolSelfCheck> {
    const { blockSize, numBlocks } = this;
    const vocab = this.config.vocabSize;
    const promptLength = Math.max(2, Math.min(blockSize + 3, this.maxModelLen - 1));
    const blocksPerSequence = Math.ceil((promptLength + 1) / blockSize);
    const blocks = (first: number): number[] => Array.from({ length: blocksPerSequence }, (_, index) => (first + index) % numBlocks);
    const written = blocks(0);
    const whole = numBlocks >= 2 * blocksPerSequence ? blocks(blocksPerSequence) : written;
    const unwritten = numBlocks >= 3 * blocksPerSequence ? blocks(numBlocks - blocksPerSequence) : undefined;
    const prompt = Array.from({ length: promptLength }, (_, index) => (7 + 13 * index) % vocab);
    const next = (5 + 13 * promptLength) % vocab;

    await this.execute([{ tokenIds: prompt, numComputedTokens: 0, blockTable: written }]);
    const decoded = (await this.execute([{ tokenIds: [next], numComputedTokens: promptLength, blockTable: written }])).logits;
    const lost = unwritten === undefined
      ? undefined
      : (await this.execute([{ tokenIds: [next], numComputedTokens: promptLength, blockTable: unwritten }])).logits;
    const reference = (await this.execute([{ tokenIds: [...prompt, next], numComputedTokens: 0, blockTable: whole }])).logits;
    const scale = reference.reduce((largest, value) => Math.max(largest, Math.abs(value)), 1e-6);
    const difference = (logits: Float32Array): number => {
      let largest = 0;
      for (let index = 0; index < reference.length; index += 1) largest = Math.max(largest, Math.abs(logits[index]! - reference[index]!));
      return largest / scale;
    };
    const tolerance = this.dtype === 'float32' ? 1e-3 : this.dtype === 'float16' ? 0.05 : 0.1;
    const result = { error: difference(decoded), lostWritesError: lost === undefined ? undefined : difference(lost), tolerance };
    if (!(result.error <= tolerance)) {
      throw new KvPoolPersistenceError(
        `the KV pools do not keep PagedAttention's writes between runs on ${this.device} (onnxruntime ${onnxRuntimeVersion()}): ` +
          `a decode step after its prefill differs from the same tokens in one run by ${result.error.toPrecision(3)} of the logits' scale ` +
          `(at most ${tolerance} allowed${result.lostWritesError === undefined ? '' : `; lost writes give ${result.lostWritesError.toPrecision(3)}`}). ` +
          'The CUDA runner keeps the pools as model initializers that the operator writes in place, which ONNX Runtime 1.29 does; ' +
          'use a version that keeps them, or --device cpu',
      );
    }
    return result;
  }

  /** Releases the session (and the pools with it). */
  async release(): Promise<void> {
    await this.session.release();
    for (const helper of this.helperSessions) await helper.release();
  }

  /** The reference runner's pools (float32 `[numBlocks, blockSize, kvHeads, headDim]`), for tests. */
  referencePool(name: string): Float32Array | undefined {
    return this.poolArrays?.get(name);
  }

  private writeReferencePools(results: ort.InferenceSession.OnnxValueMapType): void {
    const slots = results.reference_slots!.data as BigInt64Array;
    const width = this.config.numKvHeads * this.config.headDim;
    for (let layer = 0; layer < this.config.numLayers; layer += 1) {
      for (const [kind, output] of [['key', `reference_key.${layer}`], ['value', `reference_value.${layer}`]] as const) {
        const pool = this.poolArrays!.get(`${kind}_cache.${layer}`)!;
        const fresh = results[output]!.data as Float32Array;
        for (let token = 0; token < slots.length; token += 1) {
          pool.set(fresh.subarray(token * width, (token + 1) * width), Number(slots[token]) * width);
        }
      }
    }
  }

  /** Dynamic RoPE's caches for this step's longest sequence. */
  private dynamicRopeFeeds(longestSequence: number): Record<string, ort.Tensor> {
    const rows = Math.max(longestSequence, 1);
    const { cos, sin } = ropeCaches(ropeFrequencies(this.config, longestSequence), rows);
    const shape = [rows, this.config.headDim / 2];
    const tensor = (values: Float32Array): ort.Tensor =>
      this.dtype === 'float32' ? new ort.Tensor('float32', values, shape) : new ort.Tensor('float16', toHalfPrecision(values, 'float16'), shape);
    return { cos_cache: tensor(cos), sin_cache: tensor(sin) };
  }
}

/** A WebGPU session that returns a zero-filled float16 tensor of the given shape, left on the GPU. */
async function zeroPoolSession(rank: number): Promise<ort.InferenceSession> {
  const graph = new GraphBuilder(new Map());
  graph.input('shape', DataType.INT64, [rank]);
  graph.inlineConstant('zero', DataType.FLOAT16, [1], new Uint8Array(2));
  graph.node('Expand', ['zero', 'shape'], 'pool');
  graph.output('pool', DataType.FLOAT16, Array.from({ length: rank }, (_, axis) => `d${axis}`));
  const { model } = graph.finish();
  return ort.InferenceSession.create(model, { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
}

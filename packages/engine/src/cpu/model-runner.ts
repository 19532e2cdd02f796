import * as ort from 'onnxruntime-node';
import { executeInAttentionGroups, runTokenCap } from './attention-groups';
import { layoutBatch } from './batch-layout';
import type { BatchLayoutContext } from './batch-layout';
import { KvPools } from './kv-pools';
import { ModelInputError } from '../errors';
import { checkExecutionProvider, startSession } from '../execution-provider';
import type { ExecutionProvider } from '../execution-provider';
import { EmbeddingTable } from '../model/embedding-table';
import { loadModelConfig } from '../model/model-config';
import type { ModelConfig } from '../model/model-config';
import { buildModelGraph } from '../model/model-graph';
import { loadModelWeights, type ModelWeightsOptions } from '../model/model-loader';
import { ropeFrequencies, ropeType } from '../model/rope';
import { ModelFiles } from '../model/weight-file';
import type { ModelWeights } from '../model/weight-tensor';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';

/** How the runner runs: the paged cache's size and the ONNX Runtime session's settings. */
export interface ModelRunnerOptions {
  /** Blocks in each layer's key and value pool. */
  numBlocks: number;
  /** Tokens per block. */
  blockSize: number;
  /** `cpu` (default), `webgpu` or `cuda`. */
  executionProvider?: ExecutionProvider;
  /** ONNX Runtime's intra-op thread count; its default (one per core) when left out. */
  intraOpNumThreads?: number;
  /** MatMulNBits' `accuracy_level` for quantized weights (default: the engine's). */
  accuracyLevel?: number;
  /**
   * A pooling model (vLLM's `--runner pooling`): each requested row comes back as the final norm's hidden state
   * (`[rows, hiddenSize]`) rather than as logits, and the vocabulary projection is never built.
   */
  pooled?: boolean;
}

/**
 * Options for {@link ModelRunner.load}: `loadFormat` (`safetensors` reads the checkpoint's weights, `dummy` makes
 * seeded random ones from config.json alone), the dummy `seed`, `quantization`, and `onProgress` (weight-loading
 * progress; by default a progress bar on stderr when it is a terminal).
 */
export interface LoadModelOptions extends ModelRunnerOptions, ModelWeightsOptions {}

/**
 * Runs a decoder-only model over a paged KV cache in vLLM's flat batch layout: every new token of every request in
 * one session run. The runner owns the per-layer key and value pools (see {@link KvPools} for their layout); the
 * graph reads context through the block tables and returns the new tokens' keys and values, which the runner writes
 * into their slots before returning.
 */
export class ModelRunner {
  readonly config: ModelConfig;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly executionProvider: ExecutionProvider;
  private readonly session: ort.InferenceSession;
  private readonly embeddings: EmbeddingTable;
  private readonly pools: KvPools;
  private readonly layout: BatchLayoutContext;
  /** Bytes of the weight file: the session's weights and the embedding's rows (float32, or quantized codes and scales). */
  readonly weightBytes: number;

  private constructor(
    config: ModelConfig,
    session: ort.InferenceSession,
    embeddings: EmbeddingTable,
    options: ModelRunnerOptions & {
      executionProvider: ExecutionProvider;
      hasSlidingLayers: boolean;
      weightBytes: number;
    },
  ) {
    this.config = config;
    this.session = session;
    this.embeddings = embeddings;
    this.weightBytes = options.weightBytes;
    this.numBlocks = options.numBlocks;
    this.blockSize = options.blockSize;
    this.executionProvider = options.executionProvider;
    const poolShape = {
      numBlocks: options.numBlocks,
      blockSize: options.blockSize,
      numKvHeads: config.numKvHeads,
      headDim: config.headDim,
    };
    this.pools = new KvPools(Array.from({ length: config.numLayers }, (_, layer) => layer), poolShape);
    this.layout = {
      config,
      numBlocks: options.numBlocks,
      blockSize: options.blockSize,
      numKvHeads: config.numKvHeads,
      hasSlidingLayers: options.hasSlidingLayers,
      dynamicRope: ropeType(config) === 'dynamic',
      staticRope: ropeFrequencies(config),
    };
  }

  /** Loads a checkpoint folder (config.json and safetensors, or config.json alone with `loadFormat: 'dummy'`). */
  static async load(modelDir: string, options: LoadModelOptions): Promise<ModelRunner> {
    const config = await loadModelConfig(modelDir);
    const executionProvider = checkExecutionProvider(options.executionProvider ?? 'cpu');
    ropeType(config, `${modelDir}/config.json`);
    const weights = await loadModelWeights(modelDir, config, options);
    return ModelRunner.create(config, weights, { ...options, executionProvider });
  }

  /** Builds the graph for `config` over already loaded weights and starts an ONNX Runtime session. */
  static async create(config: ModelConfig, weights: ModelWeights, options: ModelRunnerOptions): Promise<ModelRunner> {
    const executionProvider = checkExecutionProvider(options.executionProvider ?? 'cpu');
    if (!Number.isInteger(options.numBlocks) || options.numBlocks < 1 || !Number.isInteger(options.blockSize) || options.blockSize < 1) {
      throw new ModelInputError(`numBlocks and blockSize must be positive integers, got ${options.numBlocks} and ${options.blockSize}`);
    }
    const graph = buildModelGraph(config, weights, {
      ...(options.accuracyLevel === undefined ? {} : { accuracyLevel: options.accuracyLevel }),
      pooled: options.pooled === true,
    });
    // The session reads the weights from a file it maps, and the runner the embedding's rows; nothing of them stays
    // in JavaScript (see WeightFile and EmbeddingTable).
    const files = await ModelFiles.create(graph.weights);
    let session: ort.InferenceSession | undefined;
    let embeddings: EmbeddingTable | undefined;
    try {
      session = await startSession(graph, executionProvider, { intraOpNumThreads: options.intraOpNumThreads, files });
      embeddings = EmbeddingTable.open(files.weightsPath, graph.embedding!);
      return new ModelRunner(config, session, embeddings, {
        ...options,
        executionProvider,
        hasSlidingLayers: graph.slidingLayers.some(Boolean),
        weightBytes: graph.weights.byteLength,
      });
    } catch (error) {
      embeddings?.close();
      await session?.release();
      throw error;
    } finally {
      await files.remove();
    }
  }

  /**
   * The key pool of `layer` (`[kvHeads · numBlocks, blockSize · headDim]`, row `head · numBlocks + block`), for
   * inspection and tests.
   */
  keyPool(layer: number): Float32Array {
    return this.pools.keyPool(layer);
  }

  /** The value pool of `layer`, laid out like {@link keyPool}. */
  valuePool(layer: number): Float32Array {
    return this.pools.valuePool(layer);
  }

  /**
   * Runs one step: the new tokens of every request, in one session run. Writes their keys and values into the
   * pools at the slots their block tables give, and returns the requested logits rows.
   */
  execute(requests: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput> {
    return executeInAttentionGroups(requests, (group) => this.executeRun(group), runTokenCap(this.config));
  }

  /** One session run over `requests`, attention padded to their longest query and context. */
  private async executeRun(requests: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput> {
    const batch = layoutBatch(requests, this.layout);
    const hidden = new ort.Tensor('float32', this.embeddings.lookup(batch.inputIds), [batch.inputIds.length, this.config.hiddenSize]);
    const results = await this.session.run({ ...batch.feeds, hidden, ...this.pools.feeds });
    for (let layer = 0; layer < this.config.numLayers; layer += 1) {
      this.pools.write(
        layer,
        results[`key.${layer}`]!.data as Float32Array,
        results[`value.${layer}`]!.data as Float32Array,
        batch.slotMapping,
      );
    }
    return {
      logits: (results.logits ?? results.hidden_states)!.data as Float32Array,
      vocabSize: results.logits === undefined ? this.config.hiddenSize : this.config.vocabSize,
      logitsRowStart: batch.logitsRowStart,
    };
  }

  /** Releases the ONNX Runtime session. */
  async release(): Promise<void> {
    this.embeddings.close();
    await this.session.release();
  }
}

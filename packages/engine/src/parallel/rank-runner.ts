import { parallelGroups, partitionPlan } from '@pagoda/parallel';
import type { Communicator, PartitionPlan, RankContext, RankPartition } from '@pagoda/parallel';
import * as ort from 'onnxruntime-node';
import { layoutBatch } from '../cpu/batch-layout';
import type { BatchLayoutContext } from '../cpu/batch-layout';
import { KvPools } from '../cpu/kv-pools';
import { startSession } from '../execution-provider';
import { loadModelConfig } from '../model/model-config';
import type { ModelConfig } from '../model/model-config';
import { EmbeddingTable } from '../model/embedding-table';
import { buildSegmentGraph } from '../model/model-graph';
import type { GraphSegment } from '../model/model-graph';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import { hasOutputBias } from '../model/model-weights';
import { loadModelWeights } from '../model/model-loader';
import type { Quantization } from '../model/quantization';
import { ropeFrequencies, ropeType } from '../model/rope';
import { ModelFiles } from '../model/weight-file';
import { modelShape, rankWeights } from './rank-weights';

/** What every rank's worker is given (plain data: it is cloned into each worker). */
export interface RankWorkerData {
  readonly modelDir: string;
  readonly loadFormat: 'safetensors' | 'dummy';
  readonly seed: number;
  readonly quantization: Quantization | undefined;
  readonly accuracyLevel: number | undefined;
  /** A pooling model: the output rank returns the final norm's hidden states, not logits. */
  readonly pooled: boolean;
  readonly numBlocks: number;
  readonly blockSize: number;
  /** ONNX Runtime intra-op threads of this rank's sessions. */
  readonly intraOpNumThreads: number;
  readonly tensorParallelSize: number;
  readonly pipelineParallelSize: number;
  /** The largest collective message, in float32 elements (the shared slot); longer ones go in chunks. */
  readonly maxMessageElements: number;
}

/** The rank whose output the executor returns: the last stage's first tensor-parallel rank. */
export function outputRankOf(config: { tensorParallelSize: number; pipelineParallelSize: number }): number {
  return (config.pipelineParallelSize - 1) * config.tensorParallelSize;
}

/**
 * The segments a rank runs, one ONNX Runtime session each. Under tensor parallelism (tp > 1) the graph is cut
 * after each row-parallel projection, where the partial sums are all-reduced in JavaScript:
 *
 * ```text
 * tp 2, layers 0-1, first and last stage:
 *   [attention 0]→partial  allReduce  [+, mlp 0]→partial  allReduce  [+, attention 1]→partial  allReduce
 *   [+, mlp 1]→partial  allReduce  [+, final norm, lm_head slice]→logits slice  allGather
 * tp 1: one segment per stage, [every layer of the stage]→hidden | logits
 *
 * The first segment of the first stage takes the step's embedding rows, which every rank of that stage reads from
 * its weight file (EmbeddingTable); a later stage's takes the previous stage's residual stream.
 * ```
 *
 * A stage that is not the last ends with the residual stream, which it sends to the next stage's rank of the same
 * tensor-parallel index (after adding the last all-reduced partial sum to it, when tp > 1).
 */
export function rankSegments(config: ModelConfig, plan: PartitionPlan, partition: RankPartition, pooled = false): GraphSegment[] {
  // A pooling model ends in the final norm: every rank holds the whole residual stream, so nothing is gathered.
  const head = pooled ? ('pooled' as const) : ('logits' as const);
  const base = {
    numHeads: partition.queryHeads.end - partition.queryHeads.start,
    numKvHeads: partition.kvHeads.end - partition.kvHeads.start,
    vocabSize: partition.vocabulary.end - partition.vocabulary.start,
    headWeight: 'lm_head.weight',
    outputBias: hasOutputBias(config) && partition.tensorParallelRank === 0,
  };
  const input = partition.embedsTokens ? ('tokens' as const) : ('hidden' as const);
  const blocks = [];
  for (let layer = partition.layers.start; layer < partition.layers.end; layer += 1) {
    blocks.push({ layer, kind: 'attention' as const }, { layer, kind: 'mlp' as const });
  }
  if (plan.tensorParallelSize === 1) {
    return [{ ...base, input, blocks, output: partition.producesLogits ? head : 'hidden' }];
  }
  const segments: GraphSegment[] = blocks.map((block, index) => ({
    ...base,
    input: index === 0 ? input : 'residual-and-partial',
    blocks: [block],
    output: 'partial',
  }));
  if (partition.producesLogits) segments.push({ ...base, input: 'residual-and-partial', blocks: [], output: head });
  return segments;
}

interface Segment {
  readonly spec: GraphSegment;
  readonly session: ort.InferenceSession;
  readonly attentionLayers: readonly number[];
}

/**
 * One rank of a tensor- and pipeline-parallel model, in its worker thread: its sessions, its shard of the KV pools
 * (its KV heads of its stage's layers; block tables are the same on every rank) and its communicators. Every rank
 * lays out the same batch from the same requests; only the output rank returns logits.
 */
export class RankModelRunner {
  private readonly pools: KvPools;
  private readonly layout: BatchLayoutContext;
  private readonly tensorGroup: Communicator;
  private readonly isOutputRank: boolean;

  private constructor(
    private readonly config: ModelConfig,
    private readonly plan: PartitionPlan,
    private readonly partition: RankPartition,
    private readonly segments: readonly Segment[],
    /** The embedding's rows, on the ranks of the stage that embeds tokens. */
    private readonly embeddings: EmbeddingTable | undefined,
    private readonly world: Communicator,
    private readonly data: RankWorkerData,
    hasSlidingLayers: boolean,
  ) {
    const numKvHeads = partition.kvHeads.end - partition.kvHeads.start;
    const layers = Array.from({ length: partition.layers.end - partition.layers.start }, (_, index) => partition.layers.start + index);
    this.pools = new KvPools(layers, { numBlocks: data.numBlocks, blockSize: data.blockSize, numKvHeads, headDim: config.headDim });
    this.layout = {
      config,
      numBlocks: data.numBlocks,
      blockSize: data.blockSize,
      numKvHeads,
      hasSlidingLayers,
      dynamicRope: ropeType(config) === 'dynamic',
      staticRope: ropeFrequencies(config),
    };
    const groups = parallelGroups(plan);
    this.tensorGroup = world.subgroup(groups.tensorParallel[partition.pipelineStage]!);
    this.isOutputRank = partition.rank === outputRankOf(plan);
  }

  /** Loads this rank's shard of the model (the worker entry's runner factory). */
  static async load(context: RankContext<RankWorkerData>): Promise<RankModelRunner> {
    const { workerData: data, communicator, rank } = context;
    const config = await loadModelConfig(data.modelDir);
    ropeType(config, `${data.modelDir}/config.json`);
    const plan = partitionPlan(modelShape(config), data);
    const partition = plan.ranks[rank]!;
    // Every rank sees the whole model's weights (the dummy ones are one seeded stream over every tensor) but reads
    // only its shards of them, as its weight file is written.
    const weights = await loadModelWeights(data.modelDir, config, {
      loadFormat: data.loadFormat,
      seed: data.seed,
      ...(data.quantization === undefined ? {} : { quantization: data.quantization }),
      onProgress: () => undefined,
    });
    const shards = rankWeights(config, weights, partition);
    const segments: Segment[] = [];
    let hasSlidingLayers = false;
    let embeddings: EmbeddingTable | undefined;
    const files = await ModelFiles.create();
    try {
      for (const spec of rankSegments(config, plan, partition, data.pooled)) {
        const graph = buildSegmentGraph(config, shards, spec, {
          weightFile: files.weights,
          ...(data.accuracyLevel === undefined ? {} : { accuracyLevel: data.accuracyLevel }),
        });
        const attentionLayers = spec.blocks.filter((block) => block.kind === 'attention').map((block) => block.layer);
        hasSlidingLayers ||= attentionLayers.some((layer) => graph.slidingLayers[layer]);
        const session = await startSession(graph, 'cpu', {
          intraOpNumThreads: data.intraOpNumThreads,
          // Each session has its own intra-op pool; only one runs at a time, so idle pools must not spin.
          ...(data.intraOpNumThreads > 1 ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
          files,
        });
        segments.push({ spec, session, attentionLayers });
        // The stage that embeds tokens reads the rows of each step's tokens from the weight file (EmbeddingTable).
        if (graph.embedding !== undefined) embeddings = EmbeddingTable.open(files.weightsPath, graph.embedding);
      }
      return new RankModelRunner(config, plan, partition, segments, embeddings, communicator, data, hasSlidingLayers);
    } catch (error) {
      embeddings?.close();
      await Promise.all(segments.map((segment) => segment.session.release()));
      throw error;
    } finally {
      await files.remove();
    }
  }

  /** Runs this rank's part of one step; resolves with the logits on the output rank, `undefined` elsewhere. */
  async execute(requests: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput | undefined> {
    // Fault injection for tests: the rank's thread dies, as a crashing worker would.
    if (isRankExitRequest(requests)) process.exit(7);
    const { config, partition, plan } = this;
    // Time spent waiting in all-reduces this step (on this rank), reported with the output.
    let allReduceMs = 0;
    let allReduceCount = 0;
    const batch = layoutBatch(requests, this.layout);
    const numTokens = batch.slotMapping.length;
    const hiddenShape = [numTokens, config.hiddenSize];
    let hidden: Float32Array | undefined;
    let residual: Float32Array | undefined;
    let partial: Float32Array | undefined;
    let logits: Float32Array | undefined;
    if (this.embeddings !== undefined) {
      hidden = this.embeddings.lookup(batch.inputIds);
    } else {
      hidden = new Float32Array(numTokens * config.hiddenSize);
      await this.inChunks(hidden, (chunk) => this.world.recv(chunk, partition.rank - plan.tensorParallelSize));
    }
    for (const segment of this.segments) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const name of segment.session.inputNames) {
        if (name === 'hidden') feeds[name] = new ort.Tensor('float32', hidden!, hiddenShape);
        else if (name === 'residual') feeds[name] = new ort.Tensor('float32', residual!, hiddenShape);
        else if (name === 'partial') feeds[name] = new ort.Tensor('float32', partial!, hiddenShape);
        else feeds[name] = batch.feeds[name] ?? this.pools.feeds[name]!;
      }
      const results = await segment.session.run(feeds);
      for (const layer of segment.attentionLayers) {
        this.pools.write(layer, results[`key.${layer}`]!.data as Float32Array, results[`value.${layer}`]!.data as Float32Array, batch.slotMapping);
      }
      switch (segment.spec.output) {
        case 'partial':
          residual = results.residual_out!.data as Float32Array;
          partial = results.partial_out!.data as Float32Array;
          {
            const started = performance.now();
            await this.inChunks(partial, (chunk) => this.tensorGroup.allReduce(chunk));
            allReduceMs += performance.now() - started;
            allReduceCount += 1;
          }
          break;
        case 'hidden':
          hidden = results.hidden_out!.data as Float32Array;
          break;
        case 'logits':
          logits = await this.gatherLogits(results.logits!.data as Float32Array, batch.numLogits);
          break;
        case 'pooled':
          logits = results.hidden_states!.data as Float32Array;
          break;
      }
    }
    if (!partition.producesLogits) {
      if (plan.tensorParallelSize > 1) {
        // The residual add the next segment would have done; float32 sums round the same in JavaScript.
        hidden = residual!;
        for (let index = 0; index < hidden.length; index += 1) hidden[index] = hidden[index]! + partial![index]!;
      }
      await this.inChunks(hidden!, (chunk) => this.world.send(chunk, partition.rank + plan.tensorParallelSize));
      return undefined;
    }
    if (!this.isOutputRank) return undefined;
    return {
      logits: logits!,
      vocabSize: this.data.pooled ? config.hiddenSize : config.vocabSize,
      logitsRowStart: batch.logitsRowStart,
      ...(allReduceCount > 0 ? { parallelStats: { allReduceCount, allReduceMs } } : {}),
    };
  }

  async close(): Promise<void> {
    this.embeddings?.close();
    await Promise.all(this.segments.map((segment) => segment.session.release()));
  }

  /** Runs `operation` over consecutive pieces of `data` that fit the shared slot (all ranks cut alike). */
  private async inChunks(data: Float32Array, operation: (chunk: Float32Array) => Promise<void>): Promise<void> {
    const step = this.data.maxMessageElements;
    for (let start = 0; start < data.length; start += step) {
      await operation(data.subarray(start, Math.min(data.length, start + step)));
    }
  }

  /**
   * All-gathers the vocabulary slices of `numLogits` rows over the stage's tensor-parallel group, rows in chunks
   * that fit the slot; every slice travels padded to `vocabularyShardSize`. Returns `[numLogits, vocab]` on the
   * output rank.
   */
  private async gatherLogits(local: Float32Array, numLogits: number): Promise<Float32Array> {
    const { plan, partition, config } = this;
    const tp = plan.tensorParallelSize;
    if (tp === 1) return local;
    const vocabSize = config.vocabSize;
    const shardSize = plan.vocabularyShardSize;
    const localWidth = partition.vocabulary.end - partition.vocabulary.start;
    const result = this.isOutputRank ? new Float32Array(numLogits * vocabSize) : undefined;
    const stageRanks = plan.ranks.slice(partition.pipelineStage * tp, (partition.pipelineStage + 1) * tp);
    const rowsPerChunk = Math.max(1, Math.floor(this.data.maxMessageElements / shardSize));
    for (let firstRow = 0; firstRow < numLogits; firstRow += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, numLogits - firstRow);
      let input: Float32Array;
      if (localWidth === shardSize) {
        input = local.subarray(firstRow * shardSize, (firstRow + rows) * shardSize);
      } else {
        input = new Float32Array(rows * shardSize);
        for (let row = 0; row < rows; row += 1) {
          input.set(local.subarray((firstRow + row) * localWidth, (firstRow + row + 1) * localWidth), row * shardSize);
        }
      }
      const gathered = new Float32Array(tp * rows * shardSize);
      await this.tensorGroup.allGather(input, gathered);
      if (result === undefined) continue;
      stageRanks.forEach(({ vocabulary }, index) => {
        const width = vocabulary.end - vocabulary.start;
        for (let row = 0; row < rows; row += 1) {
          const from = (index * rows + row) * shardSize;
          result.set(gathered.subarray(from, from + width), (firstRow + row) * vocabSize + vocabulary.start);
        }
      });
    }
    return result ?? local;
  }
}

/**
 * A batch no engine ever sends (a negative computed-token count): it makes every rank's thread exit. Tests send it
 * to prove that a dead rank surfaces as the engine's fatal error rather than a hang.
 */
export const rankExitRequest: readonly ModelRunnerRequest[] = Object.freeze([{ tokenIds: [], numComputedTokens: -1, blockTable: [] }]);

function isRankExitRequest(requests: readonly ModelRunnerRequest[]): boolean {
  return requests.length === 1 && requests[0]!.numComputedTokens === -1;
}

import { PartitionError } from './errors';
import { partitionLayers, requirePositiveInteger, shardRange } from './partition';
import type { Range } from './partition';

/** The dimensions of a decoder-only transformer that decide how it splits (the Hugging Face config's fields). */
export interface ModelShape {
  /** `num_hidden_layers`. */
  numLayers: number;
  /** `num_attention_heads`: query heads. */
  numHeads: number;
  /** `num_key_value_heads`. */
  numKvHeads: number;
  /** `head_dim` (not always `hidden_size / num_attention_heads`, e.g. Qwen3). */
  headDim: number;
  /** `hidden_size`. */
  hiddenSize: number;
  /** `intermediate_size`. */
  intermediateSize: number;
  /** `vocab_size`. */
  vocabSize: number;
}

/** A deployment's parallel layout, as `tensor_parallel_size` and `pipeline_parallel_size` set it. */
export interface ParallelConfig {
  tensorParallelSize: number;
  pipelineParallelSize: number;
}

/**
 * What one rank holds. Weight ranges index the Hugging Face `[out, in]` matrices:
 *
 * ```
 * column-parallel (split output rows)      row-parallel (split input columns, partial sums all-reduced)
 *   q_proj, k_proj, v_proj: rows of heads    o_proj:    columns of this rank's query heads
 *   gate_proj, up_proj: rows of intermediate down_proj: columns of this rank's intermediate slice
 *   lm_head: rows of vocabulary (logits all-gathered)
 *   embed_tokens: replicated on every tensor-parallel rank of the first stage
 * ```
 *
 * Biases of column-parallel weights (Qwen2's q/k/v) split like their rows; biases of row-parallel weights are added
 * once, after the all-reduce.
 */
export interface RankPartition {
  /** `pipelineStage × tensorParallelSize + tensorParallelRank`. */
  rank: number;
  tensorParallelRank: number;
  pipelineStage: number;
  /** The decoder layers this rank's stage runs. */
  layers: Range;
  /** True on the first stage: it embeds tokens (the embedding is replicated, not split). */
  embedsTokens: boolean;
  /** True on the last stage: it runs the final norm and lm_head and produces logits. */
  producesLogits: boolean;
  /** The query heads this rank computes. */
  queryHeads: Range;
  /** The KV heads this rank holds in its KV cache and computes; one head shared with other ranks when replicated. */
  kvHeads: Range;
  /** How many tensor-parallel ranks hold each of this rank's KV heads: 1, or `tp / numKvHeads` when replicated. */
  kvHeadReplicas: number;
  /** Rows of q_proj: `queryHeads × headDim`. */
  qProjRows: Range;
  /** Rows of k_proj and v_proj: `kvHeads × headDim`. */
  kvProjRows: Range;
  /** Columns of o_proj: `queryHeads × headDim`; its output is a partial sum. */
  oProjColumns: Range;
  /** Rows of gate_proj and up_proj: this rank's slice of the intermediate size. */
  mlpRows: Range;
  /** Columns of down_proj: the same slice; its output is a partial sum. */
  downProjColumns: Range;
  /**
   * Rows of lm_head: this rank's slice of the vocabulary. Every slice has `vocabularyShardSize` rows in the
   * all-gather; when the vocabulary does not divide, the last slice is shorter and its logits are padded.
   */
  vocabulary: Range;
}

/** How a model splits over `tensorParallelSize × pipelineParallelSize` ranks. */
export interface PartitionPlan {
  tensorParallelSize: number;
  pipelineParallelSize: number;
  worldSize: number;
  /** Rows of lm_head (logits) each rank contributes to the all-gather: `ceil(vocabSize / tp)`. */
  vocabularyShardSize: number;
  /** Indexed by rank: `ranks[stage × tp + tensorParallelRank]`. */
  ranks: RankPartition[];
}

/**
 * Checks that `config` can split `shape`, throwing a {@link PartitionError} that names the parameter otherwise.
 *
 * - `tensor_parallel_size` must divide the query heads and the intermediate size;
 * - KV heads either divide over the ranks, or (as in vLLM) when `tensor_parallel_size` exceeds them, are
 *   replicated: then `tensor_parallel_size` must be a multiple of them;
 * - `pipeline_parallel_size` must not exceed the layers.
 */
export function validateParallelConfig(shape: ModelShape, config: ParallelConfig): void {
  requirePositiveInteger('tensor_parallel_size', config.tensorParallelSize);
  requirePositiveInteger('pipeline_parallel_size', config.pipelineParallelSize);
  requirePositiveInteger('num_hidden_layers', shape.numLayers);
  requirePositiveInteger('num_attention_heads', shape.numHeads);
  requirePositiveInteger('num_key_value_heads', shape.numKvHeads);
  requirePositiveInteger('head_dim', shape.headDim);
  requirePositiveInteger('hidden_size', shape.hiddenSize);
  requirePositiveInteger('intermediate_size', shape.intermediateSize);
  requirePositiveInteger('vocab_size', shape.vocabSize);
  if (shape.numHeads % shape.numKvHeads !== 0) {
    throw new PartitionError(
      `num_attention_heads (${shape.numHeads}) must be a multiple of num_key_value_heads (${shape.numKvHeads})`,
      { param: 'num_key_value_heads', value: shape.numKvHeads },
    );
  }
  const tp = config.tensorParallelSize;
  const tensorParallel = { param: 'tensor_parallel_size', value: tp };
  if (shape.numHeads % tp !== 0) {
    throw new PartitionError(
      `tensor_parallel_size (${tp}) must divide the model's attention heads (num_attention_heads = ${shape.numHeads})`,
      tensorParallel,
    );
  }
  if (tp > shape.numKvHeads && tp % shape.numKvHeads !== 0) {
    throw new PartitionError(
      `tensor_parallel_size (${tp}) exceeds the model's KV heads (num_key_value_heads = ${shape.numKvHeads}), so ` +
        'they are replicated, and must then be a multiple of them',
      tensorParallel,
    );
  }
  if (tp <= shape.numKvHeads && shape.numKvHeads % tp !== 0) {
    throw new PartitionError(
      `tensor_parallel_size (${tp}) must divide the model's KV heads (num_key_value_heads = ${shape.numKvHeads})`,
      tensorParallel,
    );
  }
  if (shape.intermediateSize % tp !== 0) {
    throw new PartitionError(
      `tensor_parallel_size (${tp}) must divide the model's MLP width (intermediate_size = ${shape.intermediateSize})`,
      tensorParallel,
    );
  }
  if (tp > shape.vocabSize) {
    throw new PartitionError(
      `tensor_parallel_size (${tp}) must not exceed the vocabulary (vocab_size = ${shape.vocabSize})`,
      tensorParallel,
    );
  }
  if (config.pipelineParallelSize > shape.numLayers) {
    throw new PartitionError(
      `pipeline_parallel_size (${config.pipelineParallelSize}) must not exceed the model's layers ` +
        `(num_hidden_layers = ${shape.numLayers})`,
      { param: 'pipeline_parallel_size', value: config.pipelineParallelSize },
    );
  }
}

/**
 * Splits `shape` over `tensorParallelSize × pipelineParallelSize` ranks (Megatron layout within a stage, contiguous
 * layer ranges across stages). Ranks are numbered stage-major, so a stage's tensor-parallel group is contiguous:
 *
 * ```
 * tp 2, pp 3:   stage 0: ranks 0 1 | stage 1: ranks 2 3 | stage 2: ranks 4 5
 *               rank = pipelineStage × tp + tensorParallelRank
 * ```
 *
 * Validates first ({@link validateParallelConfig}).
 */
export function partitionPlan(shape: ModelShape, config: ParallelConfig): PartitionPlan {
  validateParallelConfig(shape, config);
  const { tensorParallelSize: tp, pipelineParallelSize: pp } = config;
  const stages = partitionLayers(shape.numLayers, pp);
  const kvHeadReplicas = tp > shape.numKvHeads ? tp / shape.numKvHeads : 1;
  const vocabularyShardSize = Math.ceil(shape.vocabSize / tp);
  const ranks: RankPartition[] = [];
  for (let stage = 0; stage < pp; stage += 1) {
    for (let tensorParallelRank = 0; tensorParallelRank < tp; tensorParallelRank += 1) {
      const queryHeads = shardRange('num_attention_heads', shape.numHeads, tp, tensorParallelRank);
      const kvHeads =
        kvHeadReplicas > 1
          ? singleton(Math.floor(tensorParallelRank / kvHeadReplicas))
          : shardRange('num_key_value_heads', shape.numKvHeads, tp, tensorParallelRank);
      const mlpRows = shardRange('intermediate_size', shape.intermediateSize, tp, tensorParallelRank);
      const attentionColumns = scale(queryHeads, shape.headDim);
      const vocabularyStart = Math.min(shape.vocabSize, tensorParallelRank * vocabularyShardSize);
      ranks.push({
        rank: stage * tp + tensorParallelRank,
        tensorParallelRank,
        pipelineStage: stage,
        layers: stages[stage]!,
        embedsTokens: stage === 0,
        producesLogits: stage === pp - 1,
        queryHeads,
        kvHeads,
        kvHeadReplicas,
        qProjRows: attentionColumns,
        kvProjRows: scale(kvHeads, shape.headDim),
        oProjColumns: { ...attentionColumns },
        mlpRows,
        downProjColumns: { ...mlpRows },
        vocabulary: {
          start: vocabularyStart,
          end: Math.min(shape.vocabSize, vocabularyStart + vocabularyShardSize),
        },
      });
    }
  }
  return { tensorParallelSize: tp, pipelineParallelSize: pp, worldSize: tp * pp, vocabularyShardSize, ranks };
}

/**
 * The ranks of each group a layout's collectives run over: `tensorParallel[stage]` all-reduce and all-gather
 * together; `pipelineParallel[tensorParallelRank]` pass hidden states stage to stage, in stage order.
 */
export function parallelGroups(config: ParallelConfig): { tensorParallel: number[][]; pipelineParallel: number[][] } {
  requirePositiveInteger('tensor_parallel_size', config.tensorParallelSize);
  requirePositiveInteger('pipeline_parallel_size', config.pipelineParallelSize);
  const { tensorParallelSize: tp, pipelineParallelSize: pp } = config;
  return {
    tensorParallel: Array.from({ length: pp }, (_, stage) => Array.from({ length: tp }, (_, index) => stage * tp + index)),
    pipelineParallel: Array.from({ length: tp }, (_, index) => Array.from({ length: pp }, (_, stage) => stage * tp + index)),
  };
}

function singleton(index: number): Range {
  return { start: index, end: index + 1 };
}

function scale(range: Range, factor: number): Range {
  return { start: range.start * factor, end: range.end * factor };
}

import { partitionPlan, type ModelShape, type RankPartition } from '@pagoda/parallel';
import { CheckpointError } from '../errors';
import type { ModelConfig } from '../model/model-config';
import { hasOutputBias } from '../model/model-weights';
import { quantizationBlockSize } from '../model/quantization';
import {
  columnShardFallsOnBlocks,
  type ModelWeights,
  type WeightFormat,
  weightColumns,
  type WeightTensor,
  weightRows,
} from '../model/weight-tensor';

/** The dimensions of `config` that decide how it splits over ranks. */
export function modelShape(config: ModelConfig): ModelShape {
  return {
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    hiddenSize: config.hiddenSize,
    intermediateSize: config.intermediateSize,
    vocabSize: config.vocabSize,
  };
}

/**
 * A rank's shards of `weights`, under their Hugging Face names (the graph builder reads them as it reads the whole
 * model), with the vocabulary projection always as `lm_head.weight`:
 *
 * ```text
 * q_proj, k_proj, v_proj (+ biases), gate_proj, up_proj   rows of the rank's heads / MLP slice
 * o_proj, down_proj                                       columns of the same (block-aligned when quantized)
 * lm_head (or the tied embedding)                         rows of the rank's vocabulary
 * norms, q_norm / k_norm (per head), embed_tokens         whole on every rank of the stage
 * ```
 *
 * Shards are read from the whole weights only when the rank's weight file is written, so a rank reads its own part
 * of each tensor. o_proj's bias (Llama's `attention_bias`) goes to tensor-parallel rank 0 only: the all-reduce adds
 * it once.
 */
export function rankWeights(config: ModelConfig, weights: ModelWeights, partition: RankPartition): ModelWeights {
  const shards = new Map<string, WeightTensor>();
  const tensor = (name: string): WeightTensor => {
    const found = weights.get(name);
    if (found === undefined) {
      throw new CheckpointError('checkpoint_tensor_missing', '(weights in memory)', 'is missing', { tensor: name });
    }
    return found;
  };
  const whole = (name: string): void => {
    shards.set(name, tensor(name));
  };
  const rows = (name: string, range: { start: number; end: number }, as = name): void => {
    shards.set(as, weightRows(tensor(name), range));
  };
  const columns = (name: string, range: { start: number; end: number }): void => {
    shards.set(name, weightColumns(tensor(name), range));
  };

  if (partition.embedsTokens) whole('model.embed_tokens.weight');
  for (let layer = partition.layers.start; layer < partition.layers.end; layer += 1) {
    const prefix = `model.layers.${layer}`;
    whole(`${prefix}.input_layernorm.weight`);
    whole(`${prefix}.post_attention_layernorm.weight`);
    rows(`${prefix}.self_attn.q_proj.weight`, partition.qProjRows);
    rows(`${prefix}.self_attn.k_proj.weight`, partition.kvProjRows);
    rows(`${prefix}.self_attn.v_proj.weight`, partition.kvProjRows);
    if (config.attentionBias) {
      rows(`${prefix}.self_attn.q_proj.bias`, partition.qProjRows);
      rows(`${prefix}.self_attn.k_proj.bias`, partition.kvProjRows);
      rows(`${prefix}.self_attn.v_proj.bias`, partition.kvProjRows);
    }
    columns(`${prefix}.self_attn.o_proj.weight`, partition.oProjColumns);
    if (hasOutputBias(config) && partition.tensorParallelRank === 0) whole(`${prefix}.self_attn.o_proj.bias`);
    if (config.qkNorm) {
      whole(`${prefix}.self_attn.q_norm.weight`);
      whole(`${prefix}.self_attn.k_norm.weight`);
    }
    rows(`${prefix}.mlp.gate_proj.weight`, partition.mlpRows);
    rows(`${prefix}.mlp.up_proj.weight`, partition.mlpRows);
    columns(`${prefix}.mlp.down_proj.weight`, partition.downProjColumns);
  }
  if (partition.producesLogits) {
    whole('model.norm.weight');
    const head = config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    rows(head, partition.vocabulary, 'lm_head.weight');
  }
  return shards;
}

/**
 * Why `tensorParallelSize` cannot shard the weights of the given formats on block boundaries (undefined when it
 * can): a row-parallel weight (o_proj, down_proj) that is quantized must split into whole 32-element blocks, or the
 * ranks would hold blocks no single rank quantizes, and their sums would no longer equal one rank's.
 */
export function quantizedShardProblem(
  config: ModelConfig,
  tensorParallelSize: number,
  formatOf: (name: string) => WeightFormat,
): string | undefined {
  if (tensorParallelSize === 1) return undefined;
  const plan = partitionPlan(modelShape(config), { tensorParallelSize, pipelineParallelSize: 1 });
  const splits = [
    { projection: 'self_attn.o_proj', width: config.numHeads * config.headDim, range: (rank: RankPartition) => rank.oProjColumns, unit: 'query heads × head_dim' },
    { projection: 'mlp.down_proj', width: config.intermediateSize, range: (rank: RankPartition) => rank.downProjColumns, unit: 'intermediate_size' },
  ];
  for (const { projection, width, range, unit } of splits) {
    for (let layer = 0; layer < config.numLayers; layer += 1) {
      const name = `model.layers.${layer}.${projection}.weight`;
      const format = formatOf(name);
      if (format === 'float32') continue;
      const broken = plan.ranks.find((rank) => !columnShardFallsOnBlocks(range(rank), width));
      if (broken === undefined) continue;
      const shard = range(broken);
      return (
        `tensor_parallel_size ${tensorParallelSize} splits the ${width} input columns (${unit}) of ${name}, stored as ${format}, ` +
        `at [${shard.start}, ${shard.end}), not on its ${quantizationBlockSize}-element quantization blocks; ` +
        `choose a tensor_parallel_size whose shards are multiples of ${quantizationBlockSize} columns, or no quantization`
      );
    }
  }
  return undefined;
}

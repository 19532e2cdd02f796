import type { ModelShape, RankPartition } from '@pagoda/parallel';
import { CheckpointError } from '../errors';
import type { ModelConfig } from '../model/model-config';
import { expectedWeights, hasOutputBias } from '../model/model-weights';
import type { ModelWeights, WantedTensor, WeightTensor } from '../model/safetensors';

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
 * The checkpoint tensors a rank reads: its stage's layers, the embedding on the first stage, the final norm and the
 * vocabulary projection on the last (the embedding there too when the model ties them).
 */
export function rankWantedWeights(config: ModelConfig, partition: RankPartition): WantedTensor[] {
  const { layers } = partition;
  return expectedWeights(config).filter(({ name }) => {
    const layer = /^model\.layers\.(\d+)\./.exec(name);
    if (layer !== null) return Number(layer[1]) >= layers.start && Number(layer[1]) < layers.end;
    if (name === 'model.embed_tokens.weight') {
      return partition.embedsTokens || (partition.producesLogits && config.tieWordEmbeddings);
    }
    return partition.producesLogits;
  });
}

/**
 * A rank's shards of `weights`, under their Hugging Face names (the graph builder reads them as it reads the whole
 * model), with the vocabulary projection always as `lm_head.weight`:
 *
 * ```text
 * q_proj, k_proj, v_proj (+ biases), gate_proj, up_proj   rows of the rank's heads / MLP slice   views, no copy
 * o_proj, down_proj                                       columns of the same                  copied
 * lm_head (or the tied embedding)                         rows of the rank's vocabulary        a view of the
 *                                                                                              embedding when tied
 * norms, q_norm / k_norm (per head), embed_tokens         whole on every rank of the stage
 * ```
 *
 * o_proj's bias (Llama's `attention_bias`) goes to tensor-parallel rank 0 only: the all-reduce adds it once.
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
    const { shape, data } = tensor(name);
    const width = shape.length === 1 ? 1 : shape[1]!;
    const shape2 = shape.length === 1 ? [range.end - range.start] : [range.end - range.start, width];
    shards.set(as, { shape: shape2, data: data.subarray(range.start * width, range.end * width) });
  };
  const columns = (name: string, range: { start: number; end: number }): void => {
    const { shape, data } = tensor(name);
    const [height, width] = shape as [number, number];
    const columnCount = range.end - range.start;
    const shard = new Float32Array(height * columnCount);
    for (let row = 0; row < height; row += 1) {
      shard.set(data.subarray(row * width + range.start, row * width + range.end), row * columnCount);
    }
    shards.set(name, { shape: [height, columnCount], data: shard });
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
    if (config.tieWordEmbeddings && !partition.embedsTokens) {
      // A view would keep the whole embedding alive on a stage that never embeds: keep only the slice.
      const view = shards.get('lm_head.weight')!;
      shards.set('lm_head.weight', { shape: view.shape, data: view.data.slice() });
    }
  }
  return shards;
}

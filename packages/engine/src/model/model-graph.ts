import { blockAttention, declareBlockAttentionInputs } from './block-attention';
import { DataType, GraphBuilder, linearNode, packedLinearNode, type PlacedRows } from './graph-builder';
import type { ModelConfig } from './model-config';
import { hasOutputBias } from './model-weights';
import { defaultAccuracyLevel } from './quantization';
import type { WeightFile } from './weight-file';
import type { ModelWeights } from './weight-tensor';

/** The model as ONNX Runtime loads it: the graph, and the weight file its initializers are placed in. */
export interface ModelGraph {
  readonly model: Uint8Array;
  readonly weights: WeightFile;
  /** Per layer, whether it attends within the sliding window (reads `sliding_attention_mask`). */
  readonly slidingLayers: readonly boolean[];
  /**
   * A segment whose input is `tokens`: where the embedding's rows lie in the weight file. The runner reads the
   * rows of the step's tokens from there (EmbeddingTable) and feeds them as `hidden`.
   */
  readonly embedding?: PlacedRows;
}

/** One block of a decoder layer: attention (norm, q/k/v, attention, o_proj) or the MLP (norm, gate/up, down_proj). */
export interface GraphBlock {
  readonly layer: number;
  readonly kind: 'attention' | 'mlp';
}

/**
 * A contiguous piece of the decoder that one ONNX Runtime session runs. The single-rank model is one segment
 * ({@link fullModelSegment}); a tensor-parallel rank cuts its layers at every all-reduce and a pipeline stage runs
 * only its layers (see the parallel rank runner):
 *
 * ```text
 * input   tokens               `hidden` [numTokens, hiddenSize]: the tokens' embedding rows, which the runner
 *                              reads from the weight file (ModelGraph.embedding, EmbeddingTable)
 *         hidden               `hidden` [numTokens, hiddenSize]: the previous pipeline stage's residual stream
 *         residual-and-partial `residual` + `partial`: the previous segment's residual and its all-reduced output
 * blocks  run in order, each added to the residual stream, except the last one of a `partial` segment
 * output  logits               final norm and the vocabulary projection of the `logits_index` rows
 *         pooled               `hidden_states`: the final norm of the `logits_index` rows, no projection (a
 *                              pooling model's embeddings are pooled from them)
 *         hidden               `hidden_out`: the residual stream
 *         partial              `residual_out` and `partial_out`: the last block's output before its residual add
 *                              (a partial sum under tensor parallelism, all-reduced before the next segment)
 * ```
 *
 * Weights are looked up by their Hugging Face names; under tensor parallelism they are the rank's shards, and
 * `numHeads`, `numKvHeads` and `vocabSize` are the rank's counts.
 */
export interface GraphSegment {
  readonly input: 'tokens' | 'hidden' | 'residual-and-partial';
  readonly blocks: readonly GraphBlock[];
  readonly output: 'logits' | 'pooled' | 'hidden' | 'partial';
  /** Query and KV heads this segment's attention computes. */
  readonly numHeads: number;
  readonly numKvHeads: number;
  /** Columns of `logits`: the rows of `headWeight`. */
  readonly vocabSize: number;
  /** The vocabulary projection's weight (`lm_head.weight`, or the embedding when the model ties them). */
  readonly headWeight: string;
  /** Whether o_proj adds its bias (Llama's `attention_bias`; under tensor parallelism only one rank adds it). */
  readonly outputBias: boolean;
}

/**
 * The whole model as one segment: the single-rank graph. A pooling model (`pooled`) returns the final norm's
 * hidden states where a generating one returns logits.
 */
export function fullModelSegment(config: ModelConfig, pooled = false): GraphSegment {
  return {
    input: 'tokens',
    blocks: Array.from({ length: config.numLayers }, (_, layer) => [
      { layer, kind: 'attention' as const },
      { layer, kind: 'mlp' as const },
    ]).flat(),
    output: pooled ? 'pooled' : 'logits',
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    vocabSize: config.vocabSize,
    headWeight: config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
    outputBias: hasOutputBias(config),
  };
}

/**
 * The single-rank graph's inputs, for a batch of `numRequests` requests with `numTokens` new tokens in all:
 *
 * ```text
 * hidden           float [numTokens, hiddenSize]     every request's new tokens' embedding rows, request after
 *                                                    request (the runner looks them up: ModelGraph.embedding)
 * rope_cos/sin     float [numTokens, 1, headDim / 2] see writeRopeCosSin
 * logits_index     int32 [numLogits]                  flat rows whose logits come back
 * ```
 *
 * and the attention inputs of {@link declareBlockAttentionInputs} (the block tables, the masks and the pools).
 *
 * Outputs: `logits` [numLogits, vocab], and per layer `key.L` [numTokens, kvHeads, 1, headDim] and `value.L`
 * [numTokens, kvHeads·headDim], the new tokens' keys (after RoPE and k-norm) and values, the same rows either way,
 * which the runner writes into the pool slots.
 *
 * Attention runs per request ({@link blockAttention}): one request's queries only ever score its own keys, and cost
 * grows with the number of requests, not its square.
 */
export function buildModelGraph(config: ModelConfig, weights: ModelWeights, options: ModelGraphOptions = {}): ModelGraph {
  return buildSegmentGraph(config, weights, fullModelSegment(config, options.pooled), options);
}

/** How the model graph is built beyond its weights. */
export interface ModelGraphOptions {
  /** MatMulNBits' `accuracy_level` for quantized weights (default {@link defaultAccuracyLevel}). */
  readonly accuracyLevel?: number;
  /** Where the initializers go: share one between graphs of the same weights (a rank's segments). */
  readonly weightFile?: WeightFile;
  /** A pooling model's graph: `hidden_states` (the final norm's output) in place of `logits` (buildModelGraph). */
  readonly pooled?: boolean;
}

/**
 * The graph of one {@link GraphSegment}: the inputs of {@link buildModelGraph} that its blocks read (attention
 * inputs only when it has an attention block, `logits_index` only when it produces logits), plus its own input and
 * output tensors.
 */
export function buildSegmentGraph(
  config: ModelConfig,
  weights: ModelWeights,
  segment: GraphSegment,
  options: ModelGraphOptions = {},
): ModelGraph {
  const graph = new GraphBuilder(weights, options.weightFile);
  const accuracyLevel = options.accuracyLevel ?? defaultAccuracyLevel;
  const { headDim, hiddenSize, rmsNormEps } = config;
  const { numHeads, numKvHeads } = segment;
  const slidingLayers = layerKinds(config);
  const attentionLayers = segment.blocks.filter((block) => block.kind === 'attention').map((block) => block.layer);
  const anySliding = attentionLayers.some((layer) => slidingLayers[layer]);

  if (segment.input !== 'residual-and-partial') graph.input('hidden', DataType.FLOAT, ['num_tokens', hiddenSize]);
  else {
    graph.input('residual', DataType.FLOAT, ['num_tokens', hiddenSize]);
    graph.input('partial', DataType.FLOAT, ['num_tokens', hiddenSize]);
  }
  if (attentionLayers.length > 0) {
    graph.input('rope_cos', DataType.FLOAT, ['num_tokens', 1, headDim / 2]);
    graph.input('rope_sin', DataType.FLOAT, ['num_tokens', 1, headDim / 2]);
    declareBlockAttentionInputs(graph, anySliding);
  }
  if (segment.output === 'logits' || segment.output === 'pooled') graph.input('logits_index', DataType.INT32, ['num_logits']);

  const constants = attentionLayers.length === 0
    ? undefined
    : {
        headsShape: graph.int64Constant('heads_shape', [0, numHeads, 1, headDim]),
        kvHeadsShape: graph.int64Constant('kv_heads_shape', [0, numKvHeads, 1, headDim]),
      };

  const rmsNorm = (input: string, weight: string, output: string): string =>
    graph.node('RMSNormalization', [input, graph.weight(weight)], output, { axis: -1, epsilon: { float: rmsNormEps } });
  const linear = (input: string, weight: string, output: string, bias?: string): string =>
    linearNode(graph, input, weight, output, { bias, accuracyLevel });
  /**
   * Projections of one input (q/k/v, gate/up) run as one packed GEMM (or MatMulNBits) and split back into their
   * outputs: on the CPU a decode step is mostly per-operator overhead and weight reads, and this is one operator
   * over one weight instead of several.
   */
  const splitProjection = (input: string, prefix: string, parts: readonly string[], outputs: readonly string[], biases: boolean): string[] => {
    const weights = parts.map((part) => `${prefix}.${part}`);
    const packed = packedLinearNode(graph, input, `${prefix}.${parts.map((part) => part.replace('_proj', '')).join('_')}_proj`, weights, `${outputs[0]}.packed`, {
      biases,
      accuracyLevel,
    });
    const sizes = weights.map((weight) => graph.weightTensor(`${weight}.weight`).shape[0]!);
    return graph.nodeOutputs('Split', [packed, graph.int64Constant(`split.${sizes.join('_')}`, sizes)], [...outputs], { axis: -1 });
  };
  // transformers' rotate_half (x·cos + [-x2, x1]·sin) in one operator: each token is a batch of its own, its heads
  // [heads, 1, headDim], with its own row of cos and sin (no position ids).
  const rope = (input: string, output: string): string => graph.node('RotaryEmbedding', [input, 'rope_cos', 'rope_sin'], output);

  /** Returns o_proj's output; declares the layer's pools as inputs and its new keys and values as outputs. */
  const attentionBlock = (hidden: string, layer: number): string => {
    const { headsShape, kvHeadsShape } = constants!;
    const prefix = `model.layers.${layer}`;
    const name = (suffix: string): string => `layers.${layer}.${suffix}`;

    const normed = rmsNorm(hidden, `${prefix}.input_layernorm.weight`, name('input_norm'));
    const [query, key, value] = splitProjection(normed, `${prefix}.self_attn`, ['q_proj', 'k_proj', 'v_proj'], [name('q'), name('k'), `value.${layer}`], config.attentionBias) as [string, string, string];

    let queryHeads = graph.node('Reshape', [query, headsShape], name('q_heads'));
    let keyHeads = graph.node('Reshape', [key, kvHeadsShape], name('k_heads'));
    if (config.qkNorm) {
      // q_norm and k_norm weigh each head's [headDim] alike, so they apply unchanged to a rank's subset of heads.
      queryHeads = rmsNorm(queryHeads, `${prefix}.self_attn.q_norm.weight`, name('q_normed'));
      keyHeads = rmsNorm(keyHeads, `${prefix}.self_attn.k_norm.weight`, name('k_normed'));
    }
    const queryRows = rope(queryHeads, name('q_rope'));
    const newKey = rope(keyHeads, `key.${layer}`);
    graph.output(newKey, DataType.FLOAT, ['num_tokens', numKvHeads, 1, headDim]);
    graph.output(value, DataType.FLOAT, ['num_tokens', numKvHeads * headDim]);

    const attentionRows = blockAttention(
      graph,
      { numHeads, numKvHeads, headDim },
      { queryRows, newKeys: newKey, newValues: value, layer, sliding: slidingLayers[layer]! },
    );
    return linear(
      attentionRows,
      `${prefix}.self_attn.o_proj.weight`,
      name('o'),
      segment.outputBias ? `${prefix}.self_attn.o_proj.bias` : undefined,
    );
  };

  /** Returns down_proj's output. */
  const mlpBlock = (hidden: string, layer: number): string => {
    const prefix = `model.layers.${layer}`;
    const name = (suffix: string): string => `layers.${layer}.${suffix}`;
    const mlpInput = rmsNorm(hidden, `${prefix}.post_attention_layernorm.weight`, name('post_attention_norm'));
    const [gate, up] = splitProjection(mlpInput, `${prefix}.mlp`, ['gate_proj', 'up_proj'], [name('gate'), name('up')], false) as [string, string];
    const activated = graph.node('Mul', [gate, graph.node('Sigmoid', [gate], name('gate_sigmoid'))], name('gate_silu'));
    const product = graph.node('Mul', [activated, up], name('gate_up'));
    return linear(product, `${prefix}.mlp.down_proj.weight`, name('down'));
  };

  const embedding = segment.input === 'tokens' ? graph.placeRows('model.embed_tokens.weight') : undefined;
  let hidden = segment.input === 'residual-and-partial' ? graph.node('Add', ['residual', 'partial'], 'segment_input') : 'hidden';
  segment.blocks.forEach((block, index) => {
    const output = block.kind === 'attention' ? attentionBlock(hidden, block.layer) : mlpBlock(hidden, block.layer);
    if (segment.output === 'partial' && index === segment.blocks.length - 1) {
      graph.output(graph.node('Identity', [hidden], 'residual_out'), DataType.FLOAT, ['num_tokens', hiddenSize]);
      graph.output(graph.node('Identity', [output], 'partial_out'), DataType.FLOAT, ['num_tokens', hiddenSize]);
      return;
    }
    const residual = block.kind === 'attention' ? 'attention_residual' : 'mlp_residual';
    hidden = graph.node('Add', [hidden, output], `layers.${block.layer}.${residual}`);
  });

  if (segment.output === 'hidden') {
    graph.output(graph.node('Identity', [hidden], 'hidden_out'), DataType.FLOAT, ['num_tokens', hiddenSize]);
  } else if (segment.output === 'logits' || segment.output === 'pooled') {
    // Only the rows asked for go through the final norm (and the vocabulary projection, the largest matmul).
    const sampled = graph.node('Gather', [hidden, 'logits_index'], 'sampled_hidden', { axis: 0 });
    if (segment.output === 'pooled') {
      graph.output(rmsNorm(sampled, 'model.norm.weight', 'hidden_states'), DataType.FLOAT, ['num_logits', hiddenSize]);
    } else {
      linear(rmsNorm(sampled, 'model.norm.weight', 'final_norm'), segment.headWeight, 'logits');
      graph.output('logits', DataType.FLOAT, ['num_logits', segment.vocabSize]);
    }
  }

  return { ...graph.finish(), slidingLayers, ...(embedding === undefined ? {} : { embedding }) };
}

/**
 * Which layers use the sliding window: `layer_types` when the config lists them (kept by parseModelConfig as
 * `layerTypes`), otherwise every layer when a window is set.
 */
export function layerKinds(config: ModelConfig): boolean[] {
  return Array.from({ length: config.numLayers }, (_, layer) =>
    config.slidingWindow === undefined ? false : (config.layerTypes?.[layer] ?? 'sliding_attention') === 'sliding_attention',
  );
}

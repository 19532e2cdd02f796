import { ModelInputError } from '../errors';
import { bytesOf, DataType, embeddingNode, floatDataType, GraphBuilder, linearNode, microsoftDomain, packedLinearNode } from '../model/graph-builder';
import { toHalfPrecision } from '../model/half';
import type { ModelConfig } from '../model/model-config';
import { layerKinds } from '../model/model-graph';
import { hasOutputBias } from '../model/model-weights';
import { blocksPerRow, bytesPerBlock, defaultAccuracyLevel } from '../model/quantization';
import { ropeFrequencies, ropeType } from '../model/rope';
import type { RopeFrequencies } from '../model/rope';
import type { WeightFile } from '../model/weight-file';
import type { ModelWeights } from '../model/weight-tensor';
import { type PagedAttentionInputs, referencePagedAttention, type ReferencePrelude, referencePrelude } from './reference-attention';

/** The element type of the GPU graph's weights, activations and KV pools. */
export type PagedDtype = 'float16' | 'bfloat16' | 'float32';

/** How {@link buildPagedGraph} builds the model. */
export interface PagedGraphOptions {
  readonly dtype: PagedDtype;
  /**
   * `paged`: `com.microsoft.PagedAttention` (CUDA, WebGPU). `reference`: the same operator contract in standard ONNX
   * operators, which the CPU runs (float32): the GPU runner's graph, batch layout and checks, testable without a GPU.
   */
  readonly attention: 'paged' | 'reference';
  /**
   * Rotary embedding and Qwen3's q/k norm inside PagedAttention, fed packed QKV (CUDA, when the head size is a
   * multiple of 16, which the operator's rotary needs); otherwise standard operators before it and separate q, k, v
   * (WebGPU, whose kernel is only known to work without them, and CUDA for other head sizes).
   */
  readonly fusedAttention: boolean;
  /**
   * `initializers`: each layer's key and value pools are zero-filled initializers of the model, so they live on the
   * device and PagedAttention writes them in place (CUDA). `inputs`: the runner feeds them every run (WebGPU's
   * `gpu-buffer` tensors; the reference runner's arrays).
   */
  readonly pools: 'initializers' | 'inputs';
  readonly numBlocks: number;
  readonly blockSize: number;
  /** Rows of the static cos/sin caches: the most positions a sequence may take (max_model_len). */
  readonly ropeRows: number;
  /**
   * Where the initializers go. Graphs built from the same weights and dtype (a profiling runner and the real one)
   * share one, so each weight is converted and written once.
   */
  readonly weightFile?: WeightFile;
  /** MatMulNBits' `accuracy_level` for quantized weights (default {@link defaultAccuracyLevel}). */
  readonly accuracyLevel?: number;
}

/** The built model and what the runner needs to know about it. */
export interface PagedGraph {
  readonly model: Uint8Array;
  readonly weights: WeightFile;
  /** Bytes of weights as the graph stores them (packed, converted, quantized codes and scales). */
  readonly weightBytes: number;
  /** Bytes of all layers' key and value pools. */
  readonly poolBytes: number;
  /** `dynamic` RoPE: the cos/sin caches are inputs, recomputed for each step's longest sequence. */
  readonly dynamicRope: boolean;
  /** Per layer, whether it attends within a sliding window. */
  readonly slidingLayers: readonly boolean[];
  /** The pools' shape: `[numBlocks, blockSize, kvHeads, headDim]`. */
  readonly poolShape: readonly number[];
}

/** Bytes per element of each dtype. */
export const pagedDtypeBytes: Record<PagedDtype, number> = { float16: 2, bfloat16: 2, float32: 4 };

/**
 * The GPU model: vLLM's flat batch layout (every new token of every request in one `[numTokens, ·]` run) with one
 * `PagedAttention` per layer reading and writing the paged KV pools through the block tables.
 *
 * ```text
 * input_ids                   int32 [numTokens]
 * cumulative_sequence_length  int32 [batch + 1]          new-token boundaries: request i's are cu[i] .. cu[i+1]-1
 * past_seqlens                int32 [batch]              tokens of each request already in the pools
 * block_table                 int32 [batch, maxBlocks]   each request's blocks in position order
 * attention_metadata          int32 [2 or 3]             [longest new run, longest total (, longest total)]
 * logits_index                int32 [numLogits]          flat rows whose logits come back
 * position_ids                int64 [numTokens]          only without fusedAttention (rotary outside the op)
 * cos_cache / sin_cache       dtype [rows, headDim / 2]  only for dynamic RoPE (otherwise initializers)
 * key_cache.L / value_cache.L dtype [numBlocks, blockSize, kvHeads, headDim]   only with pools: 'inputs'
 * ```
 *
 * Output: `logits` float32 `[numLogits, vocab]`. The reference attention also outputs each layer's new keys and
 * values (`reference_key.L`, `reference_value.L`) and their slots (`reference_slots`), which its runner writes
 * into the pools, as the real operator does in place.
 *
 * The q/k/v projections are one packed GEMM (MatMulNBits for quantized weights) and gate/up another (separate ones,
 * concatenated, when a GGUF stores the parts at different types); norms are ONNX Runtime's fused RMS norms
 * (`SkipSimplifiedLayerNormalization` adds the residual too); only the rows that sample reach the final norm and
 * the vocabulary projection, whose output is cast to float32.
 */
export function buildPagedGraph(config: ModelConfig, weights: ModelWeights, options: PagedGraphOptions): PagedGraph {
  const { dtype, attention, fusedAttention, numBlocks, blockSize } = options;
  if (fusedAttention && config.headDim % 16 !== 0) {
    throw new ModelInputError(
      `PagedAttention's own rotary embedding needs a head size divisible by 16, got ${config.headDim}; use the unfused layout`,
    );
  }
  const type = floatDataType[dtype];
  const { headDim, numHeads, numKvHeads, rmsNormEps } = config;
  const kvWidth = numKvHeads * headDim;
  const slidingLayers = layerKinds(config);
  const dynamicRope = ropeType(config) === 'dynamic';
  const accuracyLevel = options.accuracyLevel ?? defaultAccuracyLevel;

  const graph = new GraphBuilder(weights, options.weightFile);
  let weightBytes = 0;
  const counted = new Set<string>();
  const countWeight = (name: string): void => {
    if (counted.has(name)) return;
    counted.add(name);
    const tensor = graph.weightTensor(name);
    const elements = tensor.shape.reduce((product, dim) => product * dim, 1);
    if (tensor.format === 'float32') {
      weightBytes += elements * pagedDtypeBytes[dtype];
    } else {
      const blocks = tensor.shape[0] * blocksPerRow(tensor.shape[1]);
      weightBytes += blocks * (bytesPerBlock(tensor.format) + pagedDtypeBytes[dtype]);
    }
  };

  /** Float32 values computed here (the rotary caches) as an initializer of the graph's dtype. */
  const constantTensor = (name: string, shape: readonly number[], values: () => Float32Array): string => {
    const elements = shape.reduce((product, dim) => product * dim, 1);
    return graph.lazyTensor(name, type, shape, elements * pagedDtypeBytes[dtype], () =>
      dtype === 'float32' ? bytesOf(values()) : bytesOf(toHalfPrecision(values(), dtype)),
    );
  };
  const weight = (name: string): string => {
    countWeight(name);
    return graph.weight(name, dtype);
  };
  const int64 = (name: string, values: number[]): string => graph.int64Constant(name, values);
  /**
   * `input · weightᵀ (+ bias)` over checkpoint weights, as linearNode builds it, each weight one Gemm: on a device
   * every initializer is copied to device memory, so row chunks beside a tied embedding's shared initializer would
   * hold its bytes twice (the CPU's chunks exist for its prepacking, see maxGemmWeightBytes).
   */
  const linear = (input: string, weightName: string, output: string, bias?: string): string => {
    countWeight(weightName);
    if (bias !== undefined) countWeight(bias);
    return linearNode(graph, input, weightName, output, { bias, accuracyLevel, elementType: dtype, maxWeightBytes: Infinity });
  };
  /** q/k/v or gate/up as one projection (see packedLinearNode). */
  const packedLinear = (input: string, name: string, parts: readonly string[], output: string, biases = false): string =>
    packedLinearNode(graph, input, name, parts, output, { biases, accuracyLevel, elementType: dtype, maxWeightBytes: Infinity, onWeight: countWeight });

  graph.input('input_ids', DataType.INT32, ['num_tokens']);
  graph.input('cumulative_sequence_length', DataType.INT32, ['batch_plus_one']);
  graph.input('past_seqlens', DataType.INT32, ['batch']);
  graph.input('block_table', DataType.INT32, ['batch', 'max_blocks']);
  graph.input('attention_metadata', DataType.INT32, ['metadata_entries']);
  graph.input('logits_index', DataType.INT32, ['num_logits']);
  if (!fusedAttention) graph.input('position_ids', DataType.INT64, ['num_tokens']);

  if (dynamicRope) {
    graph.input('cos_cache', type, ['rope_rows', headDim / 2]);
    graph.input('sin_cache', type, ['rope_rows', headDim / 2]);
  } else {
    let caches: { cos: Float32Array; sin: Float32Array } | undefined;
    const rotary = () => (caches ??= ropeCaches(ropeFrequencies(config), options.ropeRows));
    constantTensor('cos_cache', [options.ropeRows, headDim / 2], () => rotary().cos);
    constantTensor('sin_cache', [options.ropeRows, headDim / 2], () => rotary().sin);
  }

  const poolShape = [numBlocks, blockSize, numKvHeads, headDim];
  const poolBytes = numBlocks * blockSize * kvWidth * pagedDtypeBytes[dtype];
  // Zero-filled pool initializers are holes of the weight file, which ONNX Runtime copies to the device; the key
  // holds the size, so a profiling runner's smaller pools sharing the file are their own entries.
  const pool = (name: string): string =>
    options.pools === 'initializers' ? graph.zeroTensor(name, type, poolShape, poolBytes, `${name}@${numBlocks}`) : graph.input(name, type, poolShape);

  const norm = (input: string, weightName: string, output: string): string =>
    graph.node('SimplifiedLayerNormalization', [input, weight(weightName)], output, {
      axis: -1,
      epsilon: { float: rmsNormEps },
      stash_type: 1,
    });
  /** RMS norm of `input + skip`; returns [normed, the sum]. */
  const skipNorm = (input: string, skip: string, weightName: string, output: string): [string, string] => {
    const [normed, , , sum] = graph.nodeOutputs(
      'SkipSimplifiedLayerNormalization',
      [input, skip, weight(weightName)],
      [output, '', '', `${output}.residual`],
      { epsilon: { float: rmsNormEps } },
      microsoftDomain,
    );
    return [normed!, sum!];
  };
  let prelude: ReferencePrelude | undefined;
  let ropeRows: { cos: string; sin: string } | undefined;
  const attentionBlock = (normed: string, layer: number): string => {
    const prefix = `model.layers.${layer}.self_attn`;
    const name = (suffix: string): string => `layers.${layer}.${suffix}`;
    const projections = ['q_proj', 'k_proj', 'v_proj'].map((projection) => `${prefix}.${projection}`);
    const qkv = packedLinear(normed, `${prefix}.qkv_proj`, projections, name('qkv'), config.attentionBias);
    const keyCache = pool(`key_cache.${layer}`);
    const valueCache = pool(`value_cache.${layer}`);
    // ONNX Runtime's window counts the query's own position, as transformers' sliding_window does.
    const localWindowSize = slidingLayers[layer] ? config.slidingWindow : undefined;
    const qNorm = config.qkNorm ? weight(`${prefix}.q_norm.weight`) : undefined;
    const kNorm = config.qkNorm ? weight(`${prefix}.k_norm.weight`) : undefined;

    let query = qkv;
    let key = '';
    let value = '';
    if (!fusedAttention) {
      const splits = int64('qkv_splits', [numHeads * headDim, kvWidth, kvWidth]);
      [query, key, value] = graph.nodeOutputs('Split', [qkv, splits], [name('q'), name('k'), name('v')], { axis: -1 }) as [string, string, string];
      // Per head, [numTokens, heads, headDim]: q/k norm, then transformers' rotate_half with the rows of the rotary
      // caches at each token's position, all in operators every provider runs.
      ropeRows ??= {
        cos: graph.node('Unsqueeze', [graph.node('Gather', ['cos_cache', 'position_ids'], 'rope_cos_rows', { axis: 0 }), int64('axis_1', [1])], 'rope_cos'),
        sin: graph.node('Unsqueeze', [graph.node('Gather', ['sin_cache', 'position_ids'], 'rope_sin_rows', { axis: 0 }), int64('axis_1', [1])], 'rope_sin'),
      };
      const { cos, sin } = ropeRows;
      const perHead = (input: string, heads: number, normWeight: string | undefined, output: string): string => {
        let shaped = graph.node('Reshape', [input, int64(`heads_shape.${heads}`, [0, heads, headDim])], `${output}.heads`);
        if (normWeight !== undefined) {
          shaped = graph.node('SimplifiedLayerNormalization', [shaped, normWeight], `${output}.normed`, {
            axis: -1,
            epsilon: { float: rmsNormEps },
            stash_type: 1,
          });
        }
        const [first, second] = graph.nodeOutputs('Split', [shaped], [`${output}.first`, `${output}.second`], { axis: -1, num_outputs: 2 });
        const mul = (left: string, right: string, suffix: string): string => graph.node('Mul', [left, right], `${output}.${suffix}`);
        const rotatedFirst = graph.node('Sub', [mul(first!, cos, 'first_cos'), mul(second!, sin, 'second_sin')], `${output}.rotated_first`);
        const rotatedSecond = graph.node('Add', [mul(second!, cos, 'second_cos'), mul(first!, sin, 'first_sin')], `${output}.rotated_second`);
        const rotated = graph.node('Concat', [rotatedFirst, rotatedSecond], `${output}.rotated`, { axis: -1 });
        return graph.node('Reshape', [rotated, int64(`rows_shape.${heads}`, [0, heads * headDim])], output);
      };
      query = perHead(query, numHeads, qNorm, name('q_rope'));
      key = perHead(key, numKvHeads, kNorm, name('k_rope'));
    }

    const attentionArgs = {
      query,
      key,
      value,
      keyCache,
      valueCache,
      numHeads,
      numKvHeads,
      rotary: fusedAttention,
      qNorm: fusedAttention ? qNorm : undefined,
      kNorm: fusedAttention ? kNorm : undefined,
      normEpsilon: rmsNormEps,
      localWindowSize,
    };
    let output: string;
    if (attention === 'paged') {
      output = pagedAttentionNode(graph, { ...attentionArgs, output: name('attention') });
    } else {
      const localWindowSizes = [...new Set(slidingLayers.map((sliding) => (sliding ? config.slidingWindow : undefined)))];
      prelude ??= referencePrelude(graph, { blockSize, localWindowSizes });
      output = referencePagedAttention(graph, prelude, { ...attentionArgs, layer, headDim });
    }
    const outputBias = hasOutputBias(config) ? `${prefix}.o_proj.bias` : undefined;
    return linear(output, `${prefix}.o_proj.weight`, name('o'), outputBias);
  };

  const mlpBlock = (normed: string, layer: number): string => {
    const prefix = `model.layers.${layer}.mlp`;
    const name = (suffix: string): string => `layers.${layer}.${suffix}`;
    const gateUp = packedLinear(normed, `${prefix}.gate_up_proj`, [`${prefix}.gate_proj`, `${prefix}.up_proj`], name('gate_up'));
    const [gate, up] = graph.nodeOutputs('Split', [gateUp], [name('gate'), name('up')], { axis: -1, num_outputs: 2 });
    const activated = graph.node('Mul', [gate!, graph.node('Sigmoid', [gate!], name('gate_sigmoid'))], name('gate_silu'));
    return linear(graph.node('Mul', [activated, up!], name('gate_up_product')), `${prefix}.down_proj.weight`, name('down'));
  };

  countWeight('model.embed_tokens.weight');
  // On a GPU a tied head and the embedding read one copy of the weights on the device.
  let residual = embeddingNode(graph, 'model.embed_tokens.weight', 'input_ids', 'embeddings', { elementType: dtype });
  let normed = norm(residual, 'model.layers.0.input_layernorm.weight', 'layers.0.input_norm');
  for (let layer = 0; layer < config.numLayers; layer += 1) {
    const attentionOut = attentionBlock(normed, layer);
    [normed, residual] = skipNorm(attentionOut, residual, `model.layers.${layer}.post_attention_layernorm.weight`, `layers.${layer}.post_attention_norm`);
    const mlpOut = mlpBlock(normed, layer);
    if (layer + 1 < config.numLayers) {
      [normed, residual] = skipNorm(mlpOut, residual, `model.layers.${layer + 1}.input_layernorm.weight`, `layers.${layer + 1}.input_norm`);
    } else {
      residual = graph.node('Add', [mlpOut, residual], 'final_hidden');
    }
  }
  const sampled = graph.node('Gather', [residual, 'logits_index'], 'sampled_hidden', { axis: 0 });
  const head = config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const logits = linear(norm(sampled, 'model.norm.weight', 'final_norm'), head, 'logits_dtype');
  graph.node('Cast', [logits], 'logits', { to: DataType.FLOAT });
  graph.output('logits', DataType.FLOAT, ['num_logits', config.vocabSize]);

  return {
    ...graph.finish(),
    weightBytes,
    poolBytes: poolBytes * 2 * config.numLayers,
    dynamicRope,
    slidingLayers,
    poolShape,
  };
}

/**
 * PagedAttention's rotary caches: `cos(position · frequency)` and `sin(...)` for positions `0 .. rows - 1`, each
 * `[rows, headDim / 2]`, scaled by the attention factor (YaRN). The op rotates the two halves of each head as
 * transformers' `rotate_half` does.
 */
export function ropeCaches(frequencies: RopeFrequencies, rows: number): { cos: Float32Array; sin: Float32Array } {
  const half = frequencies.inverseFrequencies.length;
  const cos = new Float32Array(rows * half);
  const sin = new Float32Array(rows * half);
  for (let position = 0; position < rows; position += 1) {
    for (let pair = 0; pair < half; pair += 1) {
      // transformers multiplies positions by frequencies in float32 before taking cos and sin.
      const angle = Math.fround(frequencies.inverseFrequencies[pair]! * position);
      cos[position * half + pair] = Math.cos(angle) * frequencies.attentionFactor;
      sin[position * half + pair] = Math.sin(angle) * frequencies.attentionFactor;
    }
  }
  return { cos, sin };
}

/** One layer's PagedAttention node: its inputs and attributes, and the name of its output. */
export interface PagedAttentionNodeArgs extends PagedAttentionInputs {
  readonly output: string;
}

/**
 * One `com.microsoft.PagedAttention` node over the graph's `cumulative_sequence_length`, `past_seqlens`,
 * `block_table` and `attention_metadata` inputs. Inputs 10-15 (slot_mapping, head_sink, the q/k norm weights, the
 * k/v scales) are optional; 16 is the metadata.
 */
export function pagedAttentionNode(graph: GraphBuilder, args: PagedAttentionNodeArgs): string {
  const inputs = [args.query, args.key, args.value, args.keyCache, args.valueCache, 'cumulative_sequence_length', 'past_seqlens', 'block_table'];
  inputs.push(args.rotary ? 'cos_cache' : '', args.rotary ? 'sin_cache' : '', '', '');
  inputs.push(args.qNorm ?? '', args.kNorm ?? '', '', '', 'attention_metadata');
  return graph.node(
    'PagedAttention',
    inputs,
    args.output,
    {
      num_heads: args.numHeads,
      kv_num_heads: args.numKvHeads,
      ...(args.rotary ? { do_rotary: 1, rotary_interleaved: 0 } : {}),
      ...(args.qNorm !== undefined ? { qk_norm_epsilon: { float: args.normEpsilon } } : {}),
      ...(args.localWindowSize === undefined ? {} : { local_window_size: args.localWindowSize }),
    },
    microsoftDomain,
  );
}

/**
 * The attention layout a device gets by default: rotary and q/k norm inside PagedAttention on CUDA (and the CPU
 * reference) when the head size is a multiple of 16, which the operator's rotary requires; outside it otherwise,
 * and always on WebGPU.
 */
export function defaultAttentionLayout(device: 'cuda' | 'webgpu' | 'cpu', headDim: number): 'fused' | 'unfused' {
  return device !== 'webgpu' && headDim % 16 === 0 ? 'fused' : 'unfused';
}

import { DataType, type GraphBuilder } from '../model/graph-builder';

/**
 * `com.microsoft.PagedAttention`'s contract in standard ONNX operators, for the CPU, which has no kernel for it. It
 * reads exactly the operator's inputs (packed or separate q/k/v, the pools `[numBlocks, blockSize, kvHeads,
 * headDim]`, `cumulative_sequence_length`, `past_seqlens`, `block_table`, the rotary caches, the q/k norm weights
 * and `attention_metadata`) and derives everything else from them in the graph, so the GPU runner's batch layout
 * is checked against the contract rather than against a second copy of its own arithmetic.
 *
 * Unlike the operator it cannot write the pools in place: it outputs the new keys and values and their slots, and
 * its runner writes them. Keys are read for positions `0 .. attention_metadata[1] - 1` only, so a metadata bound
 * below a sequence's length loses keys here as the contract says it may on the GPU. Cost is `numTokens × maxKeys`
 * per layer: a checking tool, not a fast path.
 */

/** Index tensors every layer shares, computed once per graph. */
export interface ReferencePrelude {
  /** int64 [numTokens, maxKeys]: the pool slot of key position j of each token's sequence. */
  readonly readSlots: string;
  /** int64 [numTokens, 1]: where each new token's key and value go. */
  readonly writeSlots: string;
  /** int64 [1, numTokens]: each new token's position. */
  readonly positionIds: string;
  /** Additive float mask [numTokens, 1, 1, maxKeys] per `local_window_size` (`undefined`: full causal attention). */
  readonly masks: ReadonlyMap<number | undefined, string>;
}

export function referencePrelude(
  graph: GraphBuilder,
  options: { blockSize: number; localWindowSizes: readonly (number | undefined)[] },
): ReferencePrelude {
  const { blockSize } = options;
  const int64 = (name: string, values: number[], dims?: number[]): string => graph.int64Constant(name, values, dims);
  const node = (op: string, inputs: string[], output: string, attributes: Record<string, number | number[]> = {}): string =>
    graph.node(op, inputs, `reference.${output}`, attributes);
  const toInt64 = (input: string, output: string): string => node('Cast', [input], output, { to: DataType.INT64 });
  const zero = int64('reference.zero', [0], []);
  const one = int64('reference.one', [1], []);
  const axis0 = int64('reference.axis0', [0]);
  const axis1 = int64('reference.axis1', [1]);
  const block = int64('reference.block_size', [blockSize], []);

  const numTokens = node('Squeeze', [node('Shape', ['input_ids'], 'num_tokens_1d'), axis0], 'num_tokens');
  const token = node('Range', [zero, numTokens, one], 'token');
  const cumulative = toInt64('cumulative_sequence_length', 'cumulative');
  const past = toInt64('past_seqlens', 'past');
  const blockTable = toInt64('block_table', 'block_table');
  // A token's sequence is the number of sequence ends at or before it.
  const ends = node('Slice', [cumulative, int64('reference.slice_start', [1]), int64('reference.slice_end', [2 ** 62])], 'ends');
  const passed = node('GreaterOrEqual', [node('Unsqueeze', [token, axis1], 'token_column'), node('Unsqueeze', [ends, axis0], 'ends_row')], 'passed');
  const sequence = node('ReduceSum', [toInt64(passed, 'passed_count'), axis1], 'sequence', { keepdims: 0 });
  const start = node('Gather', [cumulative, sequence], 'start', { axis: 0 });
  const position = node('Add', [node('Gather', [past, sequence], 'past_of_token', { axis: 0 }), node('Sub', [token, start], 'offset')], 'position');

  const maxKeys = toInt64(node('Gather', ['attention_metadata', one], 'max_keys_32', { axis: 0 }), 'max_keys');
  const keyPosition = node('Range', [zero, maxKeys, one], 'key_position');
  const rows = node('Gather', [blockTable, sequence], 'block_rows', { axis: 0 });
  const lastColumn = node('Sub', [node('Gather', [node('Shape', [blockTable], 'block_table_shape'), one], 'block_table_width', { axis: 0 }), one], 'last_column');
  const column = node('Min', [node('Div', [keyPosition, block], 'key_block'), lastColumn], 'key_column');
  const blocks = node('Gather', [rows, column], 'key_blocks', { axis: 1 });
  const readSlots = node('Add', [node('Mul', [blocks, block], 'key_block_start'), node('Mod', [keyPosition, block], 'key_offset')], 'read_slots');
  const positionColumn = node('Unsqueeze', [position, axis1], 'position_column');
  const writeBlock = node('GatherElements', [rows, node('Div', [positionColumn, block], 'write_column')], 'write_block', { axis: 1 });
  const writeSlots = node('Add', [node('Mul', [writeBlock, block], 'write_block_start'), node('Mod', [positionColumn, block], 'write_offset')], 'write_slots');
  graph.output(graph.node('Reshape', [writeSlots, int64('reference.flat', [-1])], 'reference_slots'), DataType.INT64, ['num_tokens']);

  const keyRow = node('Unsqueeze', [keyPosition, axis0], 'key_row');
  const causal = node('LessOrEqual', [keyRow, positionColumn], 'causal');
  const maskZero = graph.floatConstant('reference.mask_zero', [0], []);
  const maskFar = graph.floatConstant('reference.mask_far', [-Infinity], []);
  const maskShape = int64('reference.mask_shape', [0, 1, 1, -1]);
  const masks = new Map<number | undefined, string>();
  for (const window of options.localWindowSizes) {
    let visible = causal;
    if (window !== undefined) {
      // The operator's window counts the query's own position: it attends keys q - window + 1 .. q (ONNX Runtime hands
      // FlashAttention a left window of local_window_size - 1).
      const first = node('Sub', [positionColumn, int64(`reference.window_${window}`, [window - 1], [])], `window_${window}_first`);
      visible = node('And', [causal, node('GreaterOrEqual', [keyRow, first], `window_${window}_inside`)], `window_${window}_visible`);
    }
    const additive = node('Where', [visible, maskZero, maskFar], `mask_${window ?? 'full'}_2d`);
    masks.set(window, node('Reshape', [additive, maskShape], `mask_${window ?? 'full'}`));
  }
  return { readSlots, writeSlots, positionIds: node('Unsqueeze', [position, axis0], 'position_ids'), masks };
}

/** One layer's PagedAttention as the graph wires it: tensor names and the operator's attributes. */
export interface PagedAttentionInputs {
  /** Packed `[numTokens, (heads + 2 kvHeads) · headDim]` when `key` and `value` are empty, else the queries. */
  readonly query: string;
  readonly key: string;
  readonly value: string;
  readonly keyCache: string;
  readonly valueCache: string;
  readonly numHeads: number;
  readonly numKvHeads: number;
  /** The operator's `do_rotary`, from the graph's `cos_cache` and `sin_cache`. */
  readonly rotary: boolean;
  /** The operator's q/k norm weights (`qk_norm_epsilon` is `normEpsilon`). */
  readonly qNorm: string | undefined;
  readonly kNorm: string | undefined;
  readonly normEpsilon: number;
  /**
   * The operator's `local_window_size`: keys the query attends to, its own position included (undefined: all). ONNX
   * Runtime passes FlashAttention a left window of `local_window_size - 1`, so this is transformers' `sliding_window`
   * unchanged.
   */
  readonly localWindowSize: number | undefined;
}

export interface ReferenceAttentionArgs extends PagedAttentionInputs {
  readonly layer: number;
  readonly headDim: number;
}

/** One layer's PagedAttention; returns its output `[numTokens, heads · headDim]`. */
export function referencePagedAttention(graph: GraphBuilder, prelude: ReferencePrelude, args: ReferenceAttentionArgs): string {
  const { layer, numHeads, numKvHeads, headDim } = args;
  const kvWidth = numKvHeads * headDim;
  const int64 = (name: string, values: number[]): string => graph.int64Constant(name, values);
  const node = (op: string, inputs: string[], output: string, attributes: Parameters<GraphBuilder['node']>[3] = {}): string =>
    graph.node(op, inputs, `layers.${layer}.reference.${output}`, attributes);

  let query = args.query;
  let key = args.key;
  let value = args.value;
  if (key === '') {
    [query, key, value] = graph.nodeOutputs(
      'Split',
      [args.query, int64('reference.qkv_splits', [numHeads * headDim, kvWidth, kvWidth])],
      [`layers.${layer}.reference.q`, `layers.${layer}.reference.k`, `layers.${layer}.reference.v`],
      { axis: -1 },
    ) as [string, string, string];
  }
  const perHead = (input: string, heads: number, output: string, apply: (shaped: string) => string): string => {
    const shaped = node('Reshape', [input, int64(`reference.heads_${heads}`, [0, heads, headDim])], `${output}_heads`);
    return node('Reshape', [apply(shaped), int64(`reference.rows_${heads}`, [0, heads * headDim])], output);
  };
  if (args.qNorm !== undefined && args.kNorm !== undefined) {
    const headNorm = (input: string, weight: string, heads: number, output: string): string =>
      perHead(input, heads, output, (shaped) =>
        node('SimplifiedLayerNormalization', [shaped, weight], `${output}_normed`, { axis: -1, epsilon: { float: args.normEpsilon }, stash_type: 1 }),
      );
    query = headNorm(query, args.qNorm, numHeads, 'q_norm');
    key = headNorm(key, args.kNorm, numKvHeads, 'k_norm');
  }
  if (args.rotary) {
    const rotate = (input: string, heads: number, output: string): string => {
      const batched = node('Unsqueeze', [input, int64('reference.axis0', [0])], `${output}_batched`);
      const rotated = node('RotaryEmbedding', [batched, 'cos_cache', 'sin_cache', prelude.positionIds], `${output}_rotated`, {
        num_heads: heads,
        interleaved: 0,
      });
      return node('Squeeze', [rotated, int64('reference.axis0', [0])], output);
    };
    query = rotate(query, numHeads, 'q_rope');
    key = rotate(key, numKvHeads, 'k_rope');
  }
  graph.output(graph.node('Identity', [key], `reference_key.${layer}`), DataType.FLOAT, ['num_tokens', kvWidth]);
  graph.output(graph.node('Identity', [value], `reference_value.${layer}`), DataType.FLOAT, ['num_tokens', kvWidth]);

  // The pool as it is after this step's writes, then each token's keys by position: [numTokens, kvHeads, maxKeys, headDim].
  const context = (cache: string, fresh: string, kind: string): string => {
    const flat = node('Reshape', [cache, int64('reference.slot_rows', [-1, kvWidth])], `${kind}_slots`);
    const written = node('ScatterND', [flat, prelude.writeSlots, fresh], `${kind}_written`);
    const gathered = node('Gather', [written, prelude.readSlots], `${kind}_gathered`, { axis: 0 });
    const heads = node('Reshape', [gathered, int64('reference.context_heads', [0, 0, numKvHeads, headDim])], `${kind}_context_heads`);
    return node('Transpose', [heads], `${kind}_context`, { perm: [0, 2, 1, 3] });
  };
  const queries = node('Reshape', [query, int64('reference.query_heads', [0, numHeads, 1, headDim])], 'query_heads');
  const attended = node(
    'Attention',
    [queries, context(args.keyCache, key, 'key'), context(args.valueCache, value, 'value'), prelude.masks.get(args.localWindowSize)!],
    'attention',
  );
  return node('Reshape', [attended, int64('reference.output_rows', [0, numHeads * headDim])], 'output');
}

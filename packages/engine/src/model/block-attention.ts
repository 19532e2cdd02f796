import { DataType, microsoftDomain } from './graph-builder';
import type { GraphBuilder } from './graph-builder';

/**
 * The attention inputs of a CPU graph, for a batch of `numRequests` requests with `numTokens` new tokens in all,
 * padded inside attention to `maxQuery` new tokens and `contextBlocks` cached blocks per request:
 *
 * ```text
 * query_index      int32 [numRequests, maxQuery]            row in the flat batch of each request's j-th new token
 * context_blocks   int32 [kvHeads, numRequests, contextBlocks]   pool row (head · numBlocks + block) of each head of
 *                                                            each request's b-th cached block
 * token_index      int32 [numTokens]                        flat token -> its row in the padded [numRequests·maxQuery]
 * attention_mask   float [1, numRequests, 1, maxQuery, contextBlocks · blockSize + maxQuery]   0 or -inf: cached
 *                  keys in block order, then the step's new keys; causal, padding masked
 * sliding_attention_mask  (same, only when some layer has a sliding window)
 * key_split        int64 [2]                                [contextBlocks · blockSize, maxQuery]: the mask's two parts
 * key_pool.L / value_pool.L  float [kvHeads · numBlocks, blockSize · headDim]   the paged cache, read only
 * ```
 */
export function declareBlockAttentionInputs(graph: GraphBuilder, withSlidingMask: boolean): void {
  const maskShape = [1, 'num_requests', 1, 'max_query', 'max_keys'];
  graph.input('query_index', DataType.INT32, ['num_requests', 'max_query']);
  graph.input('context_blocks', DataType.INT32, ['pool_kv_heads', 'num_requests', 'context_blocks']);
  graph.input('token_index', DataType.INT32, ['num_tokens']);
  graph.input('attention_mask', DataType.FLOAT, maskShape);
  if (withSlidingMask) graph.input('sliding_attention_mask', DataType.FLOAT, maskShape);
  graph.input('key_split', DataType.INT64, [2]);
}

/** One layer's attention as {@link blockAttention} builds it. */
export interface BlockAttentionLayer {
  /** `[numTokens, numHeads · headDim]`: the new tokens' queries after RoPE (and q-norm). */
  readonly queryRows: string;
  /** `[numTokens, numKvHeads · headDim]`: the new tokens' keys after RoPE (and k-norm), and their values. */
  readonly newKeys: string;
  readonly newValues: string;
  readonly layer: number;
  readonly sliding: boolean;
}

/**
 * One layer's attention over the paged cache and the step's own tokens, per request and per query head, returning
 * `[numTokens, numHeads · headDim]` rows in flat batch order. Declares the layer's pools as inputs.
 *
 * The pools hold each head of each block as one row of `blockSize · headDim` floats (see the CPU runner's
 * `KvPools`), so one Gather of whole rows puts every head of every request's context in one contiguous
 * `[contextKeys, headDim]` matrix: `[kvHeads, numRequests, 1, contextKeys, headDim]`. The queries are laid out as
 * `[kvHeads, numRequests, groupSize, maxQuery, headDim]`, so the query heads that share a KV head broadcast against
 * it and no key or value is repeated for grouped-query attention. For a decode (`maxQuery` 1) every product is a
 * matrix-vector product, which ONNX Runtime's MLAS runs straight over the gathered keys and values without packing
 * them (it does so only when no scale is folded into the product, hence the queries are scaled first).
 *
 * The step's new keys never join the gathered context: their scores are computed apart and concatenated to the
 * context scores (`maxQuery` columns), so the only copy of the cache a step makes is the one Gather.
 *
 * ```text
 * scores  = [q · contextKeysᵀ | q · newKeysᵀ] + mask      [kvHeads, numRequests, groupSize, maxQuery, keys]
 * weights = softmax(scores)  split back at contextKeys
 * output  = contextWeights · contextValues + newWeights · newValues
 * ```
 */
export function blockAttention(
  graph: GraphBuilder,
  shape: { readonly numHeads: number; readonly numKvHeads: number; readonly headDim: number },
  input: BlockAttentionLayer,
): string {
  const { numHeads, numKvHeads, headDim } = shape;
  const groupSize = numHeads / numKvHeads;
  const name = (suffix: string): string => `layers.${input.layer}.${suffix}`;
  const scale = graph.floatConstant('attention_scale', [1 / Math.sqrt(headDim)], []);
  const queryHeads = graph.int64Constant('attention_query_heads', [0, 0, numKvHeads, groupSize, headDim]);
  const newKvHeads = graph.int64Constant('attention_new_kv_heads', [0, 0, numKvHeads, 1, headDim]);
  const contextHeads = graph.int64Constant('attention_context_heads', [numKvHeads, 0, 1, -1, headDim]);
  const outputRows = graph.int64Constant('attention_output_rows', [-1, numHeads * headDim]);
  // [numRequests, maxQuery, kvHeads, group, headDim] -> [kvHeads, numRequests, group, maxQuery, headDim]
  const headsFirst = [2, 0, 3, 1, 4];

  const perRequest = (rows: string, heads: string, kind: string): string =>
    graph.node(
      'Transpose',
      [
        graph.node(
          'Reshape',
          [graph.node('Gather', [rows, 'query_index'], name(`${kind}_padded`), { axis: 0 }), heads],
          name(`${kind}_padded_heads`),
        ),
      ],
      name(`${kind}_by_head`),
      { perm: headsFirst },
    );
  const queries = perRequest(graph.node('Mul', [input.queryRows, scale], name('q_scaled')), queryHeads, 'q');
  const newKeys = perRequest(input.newKeys, newKvHeads, 'k_new');
  const newValues = perRequest(input.newValues, newKvHeads, 'v_new');

  const poolShape = ['pool_rows', 'block_floats'];
  const context = (kind: 'key' | 'value'): string => {
    const pool = graph.input(`${kind}_pool.${input.layer}`, DataType.FLOAT, poolShape);
    const short = kind === 'key' ? 'k' : 'v';
    return graph.node(
      'Reshape',
      [graph.node('Gather', [pool, 'context_blocks'], name(`${short}_context_blocks`), { axis: 0 }), contextHeads],
      name(`${short}_context`),
    );
  };
  const contextKeys = context('key');
  const contextValues = context('value');

  const transposedProduct = (left: string, right: string, output: string): string =>
    graph.node('FusedMatMul', [left, right], output, { transB: 1 }, microsoftDomain);
  const scores = graph.node(
    'Concat',
    [transposedProduct(queries, contextKeys, name('context_scores')), transposedProduct(queries, newKeys, name('new_scores'))],
    name('scores'),
    { axis: -1 },
  );
  const weights = graph.node(
    'Softmax',
    [graph.node('Add', [scores, input.sliding ? 'sliding_attention_mask' : 'attention_mask'], name('masked_scores'))],
    name('weights'),
    { axis: -1 },
  );
  const [contextWeights, newWeights] = graph.nodeOutputs(
    'Split',
    [weights, 'key_split'],
    [name('context_weights'), name('new_weights')],
    { axis: -1 },
  );
  const output = graph.node(
    'Add',
    [
      graph.node('MatMul', [contextWeights!, contextValues], name('context_output')),
      graph.node('MatMul', [newWeights!, newValues], name('new_output')),
    ],
    name('attention'),
  );
  // [kvHeads, numRequests, group, maxQuery, headDim] -> [numRequests, maxQuery, kvHeads, group, headDim]: the padded
  // rows in HF head order (query head h · group + g), then back to the flat batch.
  const paddedRows = graph.node(
    'Reshape',
    [graph.node('Transpose', [output], name('attention_by_request'), { perm: [1, 3, 0, 2, 4] }), outputRows],
    name('attention_padded_rows'),
  );
  return graph.node('Gather', [paddedRows, 'token_index'], name('attention_rows'), { axis: 0 });
}

import { DataType, microsoftDomain } from './graph-builder';
import type { GraphBuilder } from './graph-builder';

/**
 * The attention inputs of a CPU graph, for a batch of `numRequests` requests with `numTokens` new tokens in all,
 * padded inside attention to `maxQuery` new tokens and `contextBlocks` cached blocks per request:
 *
 * ```text
 * query_index      int32 [numRequests, maxQuery]            row in the flat batch of each request's j-th new token
 * context_blocks   int32 [numRequests, kvHeads, contextBlocks]   pool row (head · numBlocks + block) of each head of
 *                                                            each request's b-th cached block
 * token_index      int32 [numTokens]                        flat token -> its row in the padded [numRequests·maxQuery]
 * attention_mask   float [numRequests, 1, maxQuery, contextBlocks · blockSize + maxQuery]   0 or -inf: cached keys
 *                  in block order, then the step's new keys; causal, padding masked
 * sliding_attention_mask  (same, only when some layer has a sliding window)
 * key_split        int64 [2]                                [contextBlocks · blockSize, maxQuery]: the mask's two parts
 * single_query     bool  []                                 every request has one new token (a decode step)
 * key_pool.L / value_pool.L  float [kvHeads · numBlocks, blockSize · headDim]   the paged cache, read only
 * ```
 *
 * On a `single_query` step the flat batch must be one row per request, in request order (as the runners' batch
 * layout makes it): the decode branch reads the rows as they are, and only the prompt branch reads `query_index`
 * and `token_index`.
 */
export function declareBlockAttentionInputs(graph: GraphBuilder, withSlidingMask: boolean): void {
  const maskShape = ['num_requests', 1, 'max_query', 'max_keys'];
  graph.input('query_index', DataType.INT32, ['num_requests', 'max_query']);
  graph.input('context_blocks', DataType.INT32, ['num_requests', 'pool_kv_heads', 'context_blocks']);
  graph.input('token_index', DataType.INT32, ['num_tokens']);
  graph.input('attention_mask', DataType.FLOAT, maskShape);
  if (withSlidingMask) graph.input('sliding_attention_mask', DataType.FLOAT, maskShape);
  graph.input('key_split', DataType.INT64, [2]);
  graph.input('single_query', DataType.BOOL, []);
}

/** One layer's attention as {@link blockAttention} builds it. */
export interface BlockAttentionLayer {
  /**
   * The new tokens' queries after RoPE (and q-norm): one row of `numHeads · headDim` per token, in any shape whose
   * first dimension is the tokens (`[numTokens, numHeads, 1, headDim]` from RotaryEmbedding).
   */
  readonly queryRows: string;
  /** The new tokens' keys after RoPE (and k-norm), and their values: one row of `numKvHeads · headDim` per token. */
  readonly newKeys: string;
  readonly newValues: string;
  readonly layer: number;
  readonly sliding: boolean;
}

/**
 * One layer's attention over the paged cache and the step's own tokens, per request, returning
 * `[numTokens, numHeads · headDim]` rows in flat batch order. Declares the layer's pools as inputs.
 *
 * The pools hold each head of each block as one row of `blockSize · headDim` floats (see the CPU runner's
 * `KvPools`), so one Gather of whole rows puts every head of every request's context in one contiguous
 * `[contextKeys, headDim]` matrix: `[numRequests, kvHeads, contextKeys, headDim]`, the only copy of the cache a
 * step makes. Queries are scaled by 1/√headDim before any product. Then one of two ways, chosen per step by
 * `single_query`:
 *
 * - A decode step (one new token per request) is bound by reading the context. The query heads that share a KV head
 *   broadcast against it (`[numRequests, kvHeads, groupSize, 1, headDim]`, reshaped straight from the flat rows:
 *   a decode step's batch is one row per request, in request order), so no key or value is repeated for
 *   grouped-query attention and every product is a matrix-vector product, which ONNX Runtime's MLAS runs straight
 *   over the gathered keys and values without packing them (it does so only when no scale is folded into the
 *   product). The new keys never join the context: their scores are computed apart and joined to the context's.
 *
 *   ```text
 *   scores  = [q · contextKeysᵀ | q · newKeysᵀ] + mask
 *   weights = softmax(scores), split back at contextKeys
 *   output  = contextWeights · contextValues + newWeights · newValues
 *   ```
 *
 * - Any other step (prompt chunks) is bound by computing scores, where ONNX `Attention` (mask, softmax and the
 *   weighted sum in one kernel) does better: the queries and the new keys and values are padded per request
 *   (`query_index`), the new ones joined to the gathered context, and the output rows gathered back into the flat
 *   batch (`token_index`). Only this branch pays for that padding.
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
  const queryHeads = graph.int64Constant('attention_query_heads', [0, 0, numHeads, headDim]);
  const kvHeads = graph.int64Constant('attention_kv_heads', [0, 0, numKvHeads, headDim]);
  const contextHeads = graph.int64Constant('attention_context_heads', [0, numKvHeads, -1, headDim]);
  const groupedQueries = graph.int64Constant('attention_grouped_queries', [0, numKvHeads, groupSize, -1, headDim]);
  const sharedKvHeads = graph.int64Constant('attention_shared_kv_heads', [0, numKvHeads, 1, -1, headDim]);
  const outputRows = graph.int64Constant('attention_output_rows', [-1, numHeads * headDim]);
  const groupAxis = graph.int64Constant('attention_group_axis', [2]);
  const mask = input.sliding ? 'sliding_attention_mask' : 'attention_mask';

  const scaledQueries = graph.node('Mul', [input.queryRows, scale], name('q_scaled'));
  const keyPool = graph.input(`key_pool.${input.layer}`, DataType.FLOAT, ['pool_rows', 'block_floats']);
  const valuePool = graph.input(`value_pool.${input.layer}`, DataType.FLOAT, ['pool_rows', 'block_floats']);
  // Each branch gathers the context itself. Gathered ahead of the If, which reads it from the enclosing graph, every
  // layer's copy stayed allocated until the run ended (peak RSS 10.1 GiB instead of 4.3 at 32 streams × 2,048).
  const context = (branch: GraphBuilder, pool: string, kind: string): string =>
    branch.node(
      'Reshape',
      [branch.node('Gather', [pool, 'context_blocks'], name(`${kind}_context_blocks`), { axis: 0 }), contextHeads],
      name(`${kind}_context`),
    );

  const decode = graph.subgraph(name('decode_attention'), (branch) => {
    const grouped = (tensor: string, heads: string, suffix: string): string =>
      branch.node('Reshape', [tensor, heads], name(suffix));
    // A decode step's flat batch is one row per request, in request order: the rows reshape straight into groups.
    const groupedQuery = grouped(scaledQueries, groupedQueries, 'q_grouped');
    const transposedProduct = (keys: string, output: string): string =>
      branch.node('FusedMatMul', [groupedQuery, keys], output, { transB: 1 }, microsoftDomain);
    const scores = branch.node(
      'Concat',
      [
        transposedProduct(grouped(context(branch, keyPool, 'k'), sharedKvHeads, 'k_context_shared'), name('context_scores')),
        transposedProduct(grouped(input.newKeys, sharedKvHeads, 'k_new_shared'), name('new_scores')),
      ],
      name('scores'),
      { axis: -1 },
    );
    const groupedMask = branch.node('Unsqueeze', [mask, groupAxis], name('mask_grouped'));
    const weights = branch.node(
      'Softmax',
      [branch.node('Add', [scores, groupedMask], name('masked_scores'))],
      name('weights'),
      { axis: -1 },
    );
    const [contextWeights, newWeights] = branch.nodeOutputs(
      'Split',
      [weights, 'key_split'],
      [name('context_weights'), name('new_weights')],
      { axis: -1 },
    );
    const output = branch.node(
      'Add',
      [
        branch.node('MatMul', [contextWeights!, grouped(context(branch, valuePool, 'v'), sharedKvHeads, 'v_context_shared')], name('context_output')),
        branch.node('MatMul', [newWeights!, grouped(input.newValues, sharedKvHeads, 'v_new_shared')], name('new_output')),
      ],
      name('grouped_attention'),
    );
    return [{ name: branch.node('Reshape', [output, outputRows], name('decode_output')), elemType: DataType.FLOAT }];
  });
  const prompt = graph.subgraph(name('prompt_attention'), (branch) => {
    // Rows of heads · headDim per token (any shape led by the tokens) -> [numRequests, heads, maxQuery, headDim]
    const perRequest = (rows: string, heads: string, kind: string): string =>
      branch.node(
        'Transpose',
        [
          branch.node(
            'Reshape',
            [branch.node('Gather', [rows, 'query_index'], name(`${kind}_padded`), { axis: 0 }), heads],
            name(`${kind}_padded_heads`),
          ),
        ],
        name(`${kind}_by_head`),
        { perm: [0, 2, 1, 3] },
      );
    const joined = (pool: string, fresh: string, kind: string): string =>
      branch.node('Concat', [context(branch, pool, `${kind}_prompt`), perRequest(fresh, kvHeads, `${kind}_new`)], name(`${kind}_all`), { axis: 2 });
    const output = branch.node(
      'Attention',
      [perRequest(scaledQueries, queryHeads, 'q'), joined(keyPool, input.newKeys, 'k'), joined(valuePool, input.newValues, 'v'), mask],
      name('prompt_output'),
      { scale: { float: 1 } },
    );
    // [numRequests, heads, maxQuery, headDim] -> [numRequests, maxQuery, heads, headDim]: the padded rows in HF head
    // order, then back to the flat batch.
    const paddedRows = branch.node(
      'Reshape',
      [branch.node('Transpose', [output], name('attention_by_request'), { perm: [0, 2, 1, 3] }), outputRows],
      name('attention_padded_rows'),
    );
    return [{ name: branch.node('Gather', [paddedRows, 'token_index'], name('prompt_rows'), { axis: 0 }), elemType: DataType.FLOAT }];
  });
  const [attention] = graph.nodeOutputs('If', ['single_query'], [name('attention_rows')], {
    then_branch: { graph: decode },
    else_branch: { graph: prompt },
  });
  return attention!;
}

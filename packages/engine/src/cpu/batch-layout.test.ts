import { describe, expect, it } from 'vitest';
import { layoutBatch } from './batch-layout';
import type { BatchLayoutContext } from './batch-layout';
import { KvPools } from './kv-pools';
import { parseModelConfig } from '../model/model-config';
import { ropeFrequencies } from '../model/rope';

const blockSize = 4;
const numBlocks = 10;

function context(json: Record<string, unknown> = {}): BatchLayoutContext {
  const config = parseModelConfig({
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 50,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    ...json,
  });
  return {
    config,
    numBlocks,
    blockSize,
    numKvHeads: config.numKvHeads,
    hasSlidingLayers: config.slidingWindow !== undefined,
    dynamicRope: false,
    staticRope: ropeFrequencies(config),
  };
}

// Request 0 decodes after 6 cached tokens (blocks 7 and 3, the second half full); request 1 runs 3 new tokens
// after 1 cached one (block 5); request 2 is a new prompt of 2 tokens.
const requests = [
  { tokenIds: [11], numComputedTokens: 6, blockTable: [7, 3] },
  { tokenIds: [12, 13, 14], numComputedTokens: 1, blockTable: [5] },
  { tokenIds: [15, 16], numComputedTokens: 0, blockTable: [9] },
];

/** Row `query` of request `request`'s mask as 0 / 1 for kept / masked keys. */
function maskRow(mask: Float32Array, request: number, query: number, maxQuery: number, maxKeys: number): number[] {
  const start = (request * maxQuery + query) * maxKeys;
  return Array.from(mask.subarray(start, start + maxKeys), (value) => (value === 0 ? 1 : 0));
}

describe('layoutBatch', () => {
  it('points each KV head of each request’s cached blocks at its pool row, head · numBlocks + block', () => {
    const { feeds } = layoutBatch(requests, context());
    expect(feeds.context_blocks!.dims).toEqual([3, 2, 2]);
    // [request][head][block]; blocks past a request's context point at row 0 and are masked.
    expect(Array.from(feeds.context_blocks!.data as Int32Array)).toEqual([7, 3, 17, 13, 5, 0, 15, 0, 0, 0, 0, 0]);
  });

  it('lays keys out as the cached blocks in table order, then the step’s new tokens, causal and padding masked', () => {
    const { feeds } = layoutBatch(requests, context());
    const maxKeys = 2 * blockSize + 3;
    expect(feeds.attention_mask!.dims).toEqual([3, 1, 3, maxKeys]);
    const mask = feeds.attention_mask!.data as Float32Array;
    //                                        cached blocks       new
    expect(maskRow(mask, 0, 0, 3, maxKeys)).toEqual([1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0]);
    expect(maskRow(mask, 1, 0, 3, maxKeys)).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    expect(maskRow(mask, 1, 2, 3, maxKeys)).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
    expect(maskRow(mask, 2, 1, 3, maxKeys)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]);
    // A padding query row attends to everything: its output is dropped, it only has to stay finite.
    expect(maskRow(mask, 0, 1, 3, maxKeys)).toEqual(Array.from({ length: maxKeys }, () => 1));
  });

  it('keeps a sliding-window layer’s keys within the window, cached and new alike', () => {
    const { feeds } = layoutBatch(requests, context({ sliding_window: 3 }));
    const maxKeys = 2 * blockSize + 3;
    const mask = feeds.sliding_attention_mask!.data as Float32Array;
    // Position 6 keeps positions 4, 5 (cached) and itself; position 3 of request 1 keeps 1, 2 (new) and itself.
    expect(maskRow(mask, 0, 0, 3, maxKeys)).toEqual([0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0]);
    expect(maskRow(mask, 1, 2, 3, maxKeys)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
  });

  it('marks a step whose requests each run one new token, which attention takes the decode way', () => {
    const decodes = [requests[0]!, { tokenIds: [9], numComputedTokens: 1, blockTable: [5] }];
    expect(Array.from(layoutBatch(decodes, context()).feeds.single_query!.data as Uint8Array)).toEqual([1]);
    expect(Array.from(layoutBatch(requests, context()).feeds.single_query!.data as Uint8Array)).toEqual([0]);
  });

  it('gives a batch without cached tokens one masked context block, so no tensor is empty', () => {
    const { feeds } = layoutBatch([requests[2]!], context());
    expect(feeds.context_blocks!.dims).toEqual([1, 2, 1]);
    expect(maskRow(feeds.attention_mask!.data as Float32Array, 0, 1, 2, blockSize + 2)).toEqual([0, 0, 0, 0, 1, 1]);
  });

  it('puts a key written at a token’s slot where the context rows of a later step read it', () => {
    const layoutContext = context();
    const headDim = layoutContext.config.headDim;
    const pools = new KvPools([0], { numBlocks, blockSize, numKvHeads: 2, headDim });
    const written = layoutBatch(requests, layoutContext);
    const keys = Float32Array.from({ length: 6 * 2 * headDim }, (_, index) => index + 1);
    pools.write(0, keys, keys, written.slotMapping);
    // Request 1's tokens sit at positions 1..3 of block 5; its next step reads that block through context_blocks.
    const later = layoutBatch([{ tokenIds: [1], numComputedTokens: 4, blockTable: [5, 2] }], layoutContext);
    const rows = later.feeds.context_blocks!.data as Int32Array;
    const rowLength = blockSize * headDim;
    for (let head = 0; head < 2; head += 1) {
      for (let position = 1; position < 4; position += 1) {
        const token = position; // request 1's new tokens are flat tokens 1, 2, 3
        const expected = keys.subarray((token * 2 + head) * headDim, (token * 2 + head + 1) * headDim);
        const start = rows[head]! * rowLength + position * headDim;
        expect(Array.from(pools.keyPool(0).subarray(start, start + headDim)), `head ${head} position ${position}`).toEqual(Array.from(expected));
      }
    }
  });
});

import * as ort from 'onnxruntime-node';
import { checkStep } from '../cpu/batch-layout';
import type { ModelRunnerRequest } from '../model-step';

/** What laying a step out for the paged graph needs. */
export interface PagedBatchContext {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly vocabSize: number;
  /**
   * Entries of `attention_metadata`: ONNX Runtime 1.29's PagedAttention takes `[max new tokens, max total]`, 1.30
   * adds a third, a lower bound on the longest total (the exact value is one).
   */
  readonly metadataEntries: 2 | 3;
  /** Whether the graph takes `position_ids` (rotary outside PagedAttention). */
  readonly positionIds: boolean;
}

/** A step as the paged graph takes it (see buildPagedGraph). */
export interface PagedBatch {
  readonly feeds: Record<string, ort.Tensor>;
  /** Request `i`'s logits rows are `logitsRowStart[i]` up to `logitsRowStart[i + 1]`. */
  readonly logitsRowStart: Int32Array;
  readonly numTokens: number;
  /** Logits rows the requests asked for (`logits_index` holds one row more when they asked for none). */
  readonly numLogits: number;
  /** The longest request, cached and new tokens together. */
  readonly longestSequence: number;
}

/**
 * Lays a step out as PagedAttention wants it: the new tokens back to back, each request's boundaries in
 * `cumulative_sequence_length`, its cached length in `past_seqlens` and its blocks in a row of `block_table`
 * (padded with block 0, never read: the op reads only the blocks a sequence's length covers).
 */
export function layoutPagedBatch(requests: readonly ModelRunnerRequest[], context: PagedBatchContext): PagedBatch {
  const { blockSize } = context;
  const shape = checkStep(requests, context);
  const numRequests = requests.length;
  const maxBlocks = Math.ceil(shape.longestSequence / blockSize);
  const inputIds = new Int32Array(shape.numTokens);
  const cumulative = new Int32Array(numRequests + 1);
  const past = new Int32Array(numRequests);
  const blockTable = new Int32Array(numRequests * maxBlocks);
  // A step of prompt chunks that all end mid-prompt samples nothing; it still computes one row, so that no kernel
  // meets a zero-row input, and the runner drops it.
  const logitsIndex = new Int32Array(Math.max(shape.numLogits, 1));
  const logitsRowStart = new Int32Array(numRequests + 1);
  const positions = context.positionIds ? new BigInt64Array(shape.numTokens) : undefined;

  let row = 0;
  let logitsRow = 0;
  requests.forEach((request, index) => {
    const newTokens = request.tokenIds.length;
    const computed = request.numComputedTokens;
    for (let token = 0; token < newTokens; token += 1) {
      inputIds[row + token] = request.tokenIds[token]!;
      if (positions !== undefined) positions[row + token] = BigInt(computed + token);
    }
    const blocksUsed = Math.ceil((computed + newTokens) / blockSize);
    for (let block = 0; block < blocksUsed; block += 1) blockTable[index * maxBlocks + block] = request.blockTable[block]!;
    past[index] = computed;
    row += newTokens;
    cumulative[index + 1] = row;
    logitsRowStart[index] = logitsRow;
    const rows = request.logits ?? 'last';
    if (rows === 'all') for (let token = 0; token < newTokens; token += 1) logitsIndex[logitsRow++] = row - newTokens + token;
    else if (rows === 'last') logitsIndex[logitsRow++] = row - 1;
  });
  logitsRowStart[numRequests] = logitsRow;

  const metadata = [shape.maxQuery, shape.longestSequence, shape.longestSequence].slice(0, context.metadataEntries);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int32', inputIds, [shape.numTokens]),
    cumulative_sequence_length: new ort.Tensor('int32', cumulative, [numRequests + 1]),
    past_seqlens: new ort.Tensor('int32', past, [numRequests]),
    block_table: new ort.Tensor('int32', blockTable, [numRequests, maxBlocks]),
    attention_metadata: new ort.Tensor('int32', Int32Array.from(metadata), [metadata.length]),
    logits_index: new ort.Tensor('int32', logitsIndex, [logitsIndex.length]),
  };
  if (positions !== undefined) feeds.position_ids = new ort.Tensor('int64', positions, [shape.numTokens]);
  return { feeds, logitsRowStart, numTokens: shape.numTokens, numLogits: shape.numLogits, longestSequence: shape.longestSequence };
}

/** `attention_metadata`'s length for an ONNX Runtime version: 2 before 1.30, 3 from it. */
export function metadataEntriesFor(onnxRuntimeVersion: string): 2 | 3 {
  const [major = 0, minor = 0] = onnxRuntimeVersion.split('.').map(Number);
  return major > 1 || (major === 1 && minor >= 30) ? 3 : 2;
}

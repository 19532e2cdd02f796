import * as ort from 'onnxruntime-node';
import { ModelInputError } from '../errors';
import type { ModelConfig } from '../model/model-config';
import type { ModelRunnerRequest } from '../model-step';
import { ropeFrequencies, writeRopeCosSin } from '../model/rope';
import type { RopeFrequencies } from '../model/rope';

/** What laying a batch out needs to know of the model and its cache. */
export interface BatchLayoutContext {
  readonly config: ModelConfig;
  readonly numBlocks: number;
  readonly blockSize: number;
  /** KV heads in this runner's pools (a tensor-parallel rank's share), which `context_blocks` indexes per head. */
  readonly numKvHeads: number;
  /** Whether some layer reads `sliding_attention_mask`. */
  readonly hasSlidingLayers: boolean;
  /** `dynamic` RoPE recomputes its frequencies from the longest sequence of each batch. */
  readonly dynamicRope: boolean;
  readonly staticRope: RopeFrequencies;
}

/** A batch as the graph takes it. */
export interface BatchLayout {
  /**
   * Every input of the single-rank graph but the pools and `hidden` (the embedding rows of {@link inputIds}, which the
   * runner looks up); a segment's session takes the ones it declares.
   */
  readonly feeds: Record<string, ort.Tensor>;
  /** Every request's new tokens, request after request. */
  readonly inputIds: Int32Array;
  /** The pool slot of each new token (flat batch order), where its key and value go. */
  readonly slotMapping: Int32Array;
  /** Request `i`'s logits rows are `logitsRowStart[i]` up to `logitsRowStart[i + 1]`. */
  readonly logitsRowStart: Int32Array;
  readonly numLogits: number;
}

/**
 * Lays the batch out for the graph (see buildModelGraph and declareBlockAttentionInputs for each input's shape).
 * Requests are padded to the longest new-token run (`maxQuery`) and the longest cached context in whole blocks
 * (`contextBlocks`) inside attention only; the projections and the MLP see the flat `numTokens` rows.
 *
 * Keys of one request, as the mask's columns see them:
 *
 * ```text
 * columns 0 .. contextBlocks·blockSize-1     the cached blocks in block-table order: position c in column c
 *                                            (columns past numComputedTokens are masked: the last block's free
 *                                            slots, where this step's own keys are about to go, and padding)
 * columns contextBlocks·blockSize + j        the step's j-th new token
 * ```
 */
export function layoutBatch(requests: readonly ModelRunnerRequest[], context: BatchLayoutContext): BatchLayout {
  const numRequests = requests.length;
  const { blockSize, config } = context;
  const { numTokens, maxQuery, maxContext, longestSequence, numLogits } = checkStep(requests, {
    blockSize,
    numBlocks: context.numBlocks,
    vocabSize: config.vocabSize,
  });
  const slot = (blockTable: ArrayLike<number>, position: number): number =>
    blockTable[Math.floor(position / blockSize)]! * blockSize + (position % blockSize);

  // At least one (fully masked) block, so no request's context is an empty tensor.
  const contextBlocks = Math.max(1, Math.ceil(maxContext / blockSize));
  const contextWidth = contextBlocks * blockSize;
  const maxKeys = contextWidth + maxQuery;
  const numKvHeads = context.numKvHeads;
  const inputIds = new Int32Array(numTokens);
  const positions = new Int32Array(numTokens);
  const slotMapping = new Int32Array(numTokens);
  const queryIndex = new Int32Array(numRequests * maxQuery);
  // Padding entries stay 0: pool row 0 is some real block, and its columns are masked.
  const contextBlockRows = new Int32Array(numKvHeads * numRequests * contextBlocks);
  const tokenIndex = new Int32Array(numTokens);
  const logitsIndex = new Int32Array(numLogits);
  const logitsRowStart = new Int32Array(numRequests + 1);
  const mask = new Float32Array(numRequests * maxQuery * maxKeys).fill(-Infinity);
  const window = config.slidingWindow;
  const slidingMask = context.hasSlidingLayers ? new Float32Array(mask.length).fill(-Infinity) : undefined;

  let row = 0;
  let logitsRow = 0;
  requests.forEach((request, requestIndex) => {
    const computed = request.numComputedTokens;
    const newTokens = request.tokenIds.length;
    for (let block = 0; block < Math.ceil(computed / blockSize); block += 1) {
      for (let head = 0; head < numKvHeads; head += 1) {
        contextBlockRows[(requestIndex * numKvHeads + head) * contextBlocks + block] =
          head * context.numBlocks + request.blockTable[block]!;
      }
    }
    for (let query = 0; query < maxQuery; query += 1) {
      const maskRow = (requestIndex * maxQuery + query) * maxKeys;
      if (query >= newTokens) {
        // A padding query attends to everything; its output is never gathered back, it must only stay finite.
        mask.fill(0, maskRow, maskRow + maxKeys);
        slidingMask?.fill(0, maskRow, maskRow + maxKeys);
        continue;
      }
      const token = request.tokenIds[query]!;
      const position = computed + query;
      inputIds[row] = token;
      positions[row] = position;
      slotMapping[row] = slot(request.blockTable, position);
      queryIndex[requestIndex * maxQuery + query] = row;
      tokenIndex[row] = requestIndex * maxQuery + query;
      mask.fill(0, maskRow, maskRow + computed);
      mask.fill(0, maskRow + contextWidth, maskRow + contextWidth + query + 1);
      if (slidingMask !== undefined && window !== undefined) {
        // transformers keeps key k for query q when q - k < window.
        const firstKey = Math.max(0, position - window + 1);
        if (firstKey < computed) slidingMask.fill(0, maskRow + firstKey, maskRow + computed);
        const firstNew = Math.max(0, firstKey - computed);
        slidingMask.fill(0, maskRow + contextWidth + firstNew, maskRow + contextWidth + query + 1);
      }
      row += 1;
    }
    const rows = request.logits ?? 'last';
    logitsRowStart[requestIndex] = logitsRow;
    if (rows === 'all') for (let query = 0; query < newTokens; query += 1) logitsIndex[logitsRow++] = row - newTokens + query;
    else if (rows === 'last') logitsIndex[logitsRow++] = row - 1;
  });
  logitsRowStart[numRequests] = logitsRow;
  // Padding entries of query_index stay 0: they gather some real row, whose result is masked or discarded.

  const headDim = config.headDim;
  const cos = new Float32Array((numTokens * headDim) / 2);
  const sin = new Float32Array((numTokens * headDim) / 2);
  const frequencies = context.dynamicRope ? ropeFrequencies(config, longestSequence) : context.staticRope;
  writeRopeCosSin(frequencies, positions, cos, sin);

  const feeds: Record<string, ort.Tensor> = {
    rope_cos: new ort.Tensor('float32', cos, [numTokens, 1, headDim / 2]),
    rope_sin: new ort.Tensor('float32', sin, [numTokens, 1, headDim / 2]),
    query_index: new ort.Tensor('int32', queryIndex, [numRequests, maxQuery]),
    context_blocks: new ort.Tensor('int32', contextBlockRows, [numRequests, numKvHeads, contextBlocks]),
    token_index: new ort.Tensor('int32', tokenIndex, [numTokens]),
    attention_mask: new ort.Tensor('float32', mask, [numRequests, 1, maxQuery, maxKeys]),
    key_split: new ort.Tensor('int64', BigInt64Array.of(BigInt(contextWidth), BigInt(maxQuery)), [2]),
    single_query: new ort.Tensor('bool', Uint8Array.of(maxQuery === 1 ? 1 : 0), []),
    logits_index: new ort.Tensor('int32', logitsIndex, [numLogits]),
  };
  if (slidingMask !== undefined) {
    feeds.sliding_attention_mask = new ort.Tensor('float32', slidingMask, [numRequests, 1, maxQuery, maxKeys]);
  }
  return { feeds, inputIds, slotMapping, logitsRowStart, numLogits };
}


/** A step's sizes, from {@link checkStep}. */
export interface StepShape {
  readonly numTokens: number;
  /** The most new tokens of one request. */
  readonly maxQuery: number;
  /** The most cached tokens of one request. */
  readonly maxContext: number;
  /** The longest request, cached and new tokens together. */
  readonly longestSequence: number;
  readonly numLogits: number;
}

/**
 * Checks a step's requests before any runner lays them out: each has new tokens inside the vocabulary, a whole
 * number of cached tokens, and a block table covering all its tokens with blocks inside the pool.
 */
export function checkStep(
  requests: readonly ModelRunnerRequest[],
  limits: { readonly blockSize: number; readonly numBlocks: number; readonly vocabSize: number },
): StepShape {
  if (requests.length === 0) throw new ModelInputError('a step needs at least one request');
  const { blockSize, numBlocks, vocabSize } = limits;
  let numTokens = 0;
  let maxQuery = 0;
  let maxContext = 0;
  let longestSequence = 0;
  let numLogits = 0;
  requests.forEach((request, requestIndex) => {
    const newTokens = request.tokenIds.length;
    const total = request.numComputedTokens + newTokens;
    if (newTokens < 1) throw new ModelInputError(`request ${requestIndex} has no new tokens`, { requestIndex });
    if (!Number.isInteger(request.numComputedTokens) || request.numComputedTokens < 0) {
      throw new ModelInputError(`request ${requestIndex} has numComputedTokens ${request.numComputedTokens}`, { requestIndex });
    }
    const blocksNeeded = Math.ceil(total / blockSize);
    if (request.blockTable.length < blocksNeeded) {
      throw new ModelInputError(
        `request ${requestIndex} needs ${blocksNeeded} blocks for ${total} tokens but its block table has ${request.blockTable.length}`,
        { requestIndex },
      );
    }
    for (let index = 0; index < blocksNeeded; index += 1) {
      const block = request.blockTable[index]!;
      if (!Number.isInteger(block) || block < 0 || block >= numBlocks) {
        throw new ModelInputError(`request ${requestIndex} has block ${block}, outside 0..${numBlocks - 1}`, { requestIndex });
      }
    }
    for (let index = 0; index < newTokens; index += 1) {
      const token = request.tokenIds[index]!;
      if (!Number.isInteger(token) || token < 0 || token >= vocabSize) {
        throw new ModelInputError(`request ${requestIndex} has token id ${token}, outside 0..${vocabSize - 1}`, { requestIndex });
      }
    }
    numTokens += newTokens;
    maxQuery = Math.max(maxQuery, newTokens);
    maxContext = Math.max(maxContext, request.numComputedTokens);
    longestSequence = Math.max(longestSequence, total);
    const rows = request.logits ?? 'last';
    numLogits += rows === 'all' ? newTokens : rows === 'last' ? 1 : 0;
  });
  return { numTokens, maxQuery, maxContext, longestSequence, numLogits };
}

import { type HashableRequest, updateBlockHashes } from './block-hash';
import { BlockPool, type KVCacheBlock, type KVCacheEvent } from './block-pool';
import { KvCacheError } from './errors';

/** What the manager needs to know of a request. The caller (the scheduler) owns it and keeps it current. */
export interface KVCacheRequest extends HashableRequest {
  readonly requestId: string;
  /** Tokens whose keys and values are already in the cache. */
  readonly numComputedTokens: number;
  /** Don't look this request up in the prefix cache (e.g. it wants prompt logprobs, which need every position). */
  readonly skipPrefixCache?: boolean | undefined;
}

/** A prefix-cache hit: the blocks that hold a request's longest cached prefix, and how many tokens they cover. */
export interface ComputedBlocks {
  readonly blocks: readonly KVCacheBlock[];
  readonly numComputedTokens: number;
}

/**
 * Cumulative prefix-cache counters, in tokens (as vLLM's `prefix_cache_queries` / `prefix_cache_hits`). A query is
 * counted when a request is admitted: `allocateSlots` succeeds with the `newComputedBlocks` of its lookup.
 */
export interface PrefixCacheStats {
  requests: number;
  queries: number;
  hits: number;
}

export interface KVCacheManagerOptions {
  numBlocks: number;
  blockSize: number;
  maxModelLen: number;
  enablePrefixCaching?: boolean;
  /** Record block-stored / block-removed events for `takeEvents()`. */
  enableEvents?: boolean;
}

const noBlocks: readonly KVCacheBlock[] = Object.freeze([]);
const noHit: ComputedBlocks = Object.freeze({ blocks: noBlocks, numComputedTokens: 0 });

/**
 * vLLM v1's KV cache manager for one attention type (full attention): which blocks each request holds, prefix
 * lookups, and slot allocation. Slots are laid out block by block; a request's token `t` lives in block
 * `blocks[floor(t / blockSize)]` at offset `t % blockSize`:
 *
 * ```
 * request tokens  0 … 15 | 16 … 31 | 32 … 37 ·········
 * blocks          [ b4  ] [  b9   ] [ b2 (6 of 16 used) ]
 *                 └ cached ┘└cached┘ └ filling; hashed once full
 * ```
 */
export class KVCacheManager {
  readonly blockSize: number;
  readonly maxModelLen: number;
  readonly enablePrefixCaching: boolean;
  readonly blockPool: BlockPool;
  /** Per request: its blocks in token order, and how many of the leading ones are cached (findable). */
  private readonly requestStates = new Map<string, { blocks: KVCacheBlock[]; numCachedBlocks: number }>();
  private readonly stats: PrefixCacheStats = { requests: 0, queries: 0, hits: 0 };

  constructor(options: KVCacheManagerOptions) {
    const { numBlocks, blockSize, maxModelLen } = options;
    if (!Number.isInteger(blockSize) || blockSize < 1) {
      throw new KvCacheError('invalid_block_size', `block_size must be a positive integer, got ${blockSize}`);
    }
    if (!Number.isInteger(maxModelLen) || maxModelLen < 1) {
      throw new KvCacheError('invalid_max_model_len', `max_model_len must be a positive integer, got ${maxModelLen}`);
    }
    this.blockSize = blockSize;
    this.maxModelLen = maxModelLen;
    this.enablePrefixCaching = options.enablePrefixCaching ?? true;
    this.blockPool = new BlockPool(numBlocks, this.enablePrefixCaching, options.enableEvents ?? false);
  }

  get numFreeBlocks(): number {
    return this.blockPool.numFreeBlocks;
  }

  /** The fraction of KV blocks in use, in [0, 1]. */
  get usage(): number {
    return this.blockPool.usage;
  }

  get prefixCacheStats(): Readonly<PrefixCacheStats> {
    return this.stats;
  }

  /**
   * The longest cached prefix of a request not yet holding blocks: its blocks and token count. Never the whole
   * request: the last token must still be computed to produce logits, so at most `numTokens - 1` tokens hit.
   * The blocks are not yet referenced; pass them to `allocateSlots` as `newComputedBlocks`.
   */
  getComputedBlocks(request: KVCacheRequest): ComputedBlocks {
    if (!this.enablePrefixCaching || request.skipPrefixCache === true) return noHit;
    updateBlockHashes(request, this.blockSize);
    const numTokens = request.tokenIds.length;
    const maxHitBlocks = Math.min(Math.floor((numTokens - 1) / this.blockSize), request.blockHashes.length);
    const blocks: KVCacheBlock[] = [];
    for (let index = 0; index < maxHitBlocks; index += 1) {
      const block = this.blockPool.getCachedBlock(request.blockHashes[index]!);
      if (block === undefined) break;
      blocks.push(block);
    }
    return blocks.length === 0 ? noHit : { blocks, numComputedTokens: blocks.length * this.blockSize };
  }

  /**
   * Makes room for `numNewTokens` more tokens of a request (after `request.numComputedTokens` and any prefix hit),
   * plus `numLookaheadTokens`. Returns the newly allocated blocks (often none: a decode step mostly writes into
   * the last block), or `null` when they don't fit; then nothing changed, and the caller may preempt and retry.
   * Full blocks of the tokens computed before this call become findable by their hashes (see `cacheBlocks`).
   */
  allocateSlots(
    request: KVCacheRequest,
    numNewTokens: number,
    options?: { newComputedBlocks?: ComputedBlocks; numLookaheadTokens?: number },
  ): readonly KVCacheBlock[] | null {
    if (!(numNewTokens >= 0)) {
      throw new KvCacheError('invalid_num_new_tokens', `numNewTokens must be >= 0, got ${numNewTokens}`);
    }
    const hit = options?.newComputedBlocks ?? noHit;
    const lookahead = options?.numLookaheadTokens ?? 0;
    let state = this.requestStates.get(request.requestId);
    if (state !== undefined && hit.blocks.length > 0) {
      throw new KvCacheError(
        'prefix_hit_on_running_request',
        `request ${request.requestId} already holds blocks; prefix hits apply only when it is admitted`,
      );
    }

    const numComputedTokens = request.numComputedTokens + hit.numComputedTokens;
    const numTokensNeedingSlots = Math.min(numComputedTokens + numNewTokens + lookahead, this.maxModelLen);
    const numHeldBlocks = (state?.blocks.length ?? 0) + hit.blocks.length;
    const numBlocksToAllocate = Math.max(0, Math.ceil(numTokensNeedingSlots / this.blockSize) - numHeldBlocks);
    let numHitBlocksLeavingFreeQueue = 0;
    for (const block of hit.blocks) if (block.refCount === 0) numHitBlocksLeavingFreeQueue += 1;
    if (numBlocksToAllocate + numHitBlocksLeavingFreeQueue > this.blockPool.numFreeBlocks) return null;

    if (state === undefined) {
      state = { blocks: [], numCachedBlocks: hit.blocks.length };
      this.requestStates.set(request.requestId, state);
      if (hit.blocks.length > 0) {
        this.blockPool.touch(hit.blocks);
        for (const block of hit.blocks) state.blocks.push(block);
      }
    }
    const newBlocks = numBlocksToAllocate === 0 ? noBlocks : this.blockPool.getNewBlocks(numBlocksToAllocate);
    for (const block of newBlocks) state.blocks.push(block);

    if (options?.newComputedBlocks !== undefined && this.enablePrefixCaching && request.skipPrefixCache !== true) {
      // One query per admitted request: a lookup retried while the request waits for room is not counted again.
      this.stats.requests += 1;
      this.stats.queries += request.tokenIds.length;
      this.stats.hits += hit.numComputedTokens;
    }
    this.cacheBlocks(request, numComputedTokens);
    return newBlocks;
  }

  /**
   * Makes the request's full blocks among its first `numComputedTokens` tokens findable by prefix lookups. Only
   * computed tokens are cached: a block whose keys and values are still being written must not be handed to
   * another request (a runner that writes the cache after its forward pass would give it stale slots). The
   * manager calls this itself on `allocateSlots` and `free`; a scheduler calls it after each step so that the
   * step's blocks are findable at once.
   */
  cacheBlocks(request: KVCacheRequest, numComputedTokens: number = request.numComputedTokens): void {
    if (!this.enablePrefixCaching) return;
    const state = this.requestStates.get(request.requestId);
    if (state === undefined || (state.numCachedBlocks + 1) * this.blockSize > numComputedTokens) return;
    updateBlockHashes(request, this.blockSize);
    const numFullBlocks = Math.min(Math.floor(numComputedTokens / this.blockSize), request.blockHashes.length, state.blocks.length);
    if (numFullBlocks > state.numCachedBlocks) {
      this.blockPool.cacheFullBlocks(state.blocks, request.blockHashes, state.numCachedBlocks, numFullBlocks, this.blockSize);
      state.numCachedBlocks = numFullBlocks;
    }
  }

  /**
   * Releases a request's blocks, tail first, so its tail is evicted before its (more shareable) head. Its
   * computed full blocks (up to `request.numComputedTokens`) are cached first, so they stay findable.
   */
  free(request: KVCacheRequest | string): void {
    const requestId = typeof request === 'string' ? request : request.requestId;
    const state = this.requestStates.get(requestId);
    if (state === undefined) return;
    if (typeof request !== 'string') this.cacheBlocks(request);
    this.requestStates.delete(requestId);
    this.blockPool.freeBlocks(state.blocks.reverse());
  }

  /** The blocks a request holds, in token order (its block table). */
  getBlocks(requestId: string): readonly KVCacheBlock[] {
    return this.requestStates.get(requestId)?.blocks ?? noBlocks;
  }

  /** The ids of the blocks a request holds, in token order. */
  getBlockIds(requestId: string): number[] {
    return this.getBlocks(requestId).map((block) => block.blockId);
  }

  /** The number of requests holding blocks. */
  get numRequests(): number {
    return this.requestStates.size;
  }

  /** Forgets all cached prefixes; only while no request holds blocks. Returns whether it happened. */
  resetPrefixCache(): boolean {
    return this.blockPool.resetPrefixCache();
  }

  /** Events since the last call (block stored, block removed, all cleared), when events are enabled. */
  takeEvents(): KVCacheEvent[] {
    return this.blockPool.takeEvents();
  }
}


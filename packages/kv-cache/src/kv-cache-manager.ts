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

/** Cumulative prefix-cache counters, in tokens (as vLLM's `prefix_cache_queries` / `prefix_cache_hits`). */
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
  private readonly requestBlocks = new Map<string, KVCacheBlock[]>();
  private readonly numCachedBlocks = new Map<string, number>();
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
    const numComputedTokens = blocks.length * this.blockSize;
    this.stats.requests += 1;
    this.stats.queries += numTokens;
    this.stats.hits += numComputedTokens;
    return blocks.length === 0 ? noHit : { blocks, numComputedTokens };
  }

  /**
   * Makes room for `numNewTokens` more tokens of a request (after `request.numComputedTokens` and any prefix hit),
   * plus `numLookaheadTokens`. Returns the newly allocated blocks (often none: a decode step mostly writes into
   * the last block), or `null` when they don't fit; then nothing changed, and the caller may preempt and retry.
   * Full blocks among the request's blocks become findable by their hashes.
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
    const blockSize = this.blockSize;
    let blocks = this.requestBlocks.get(request.requestId);
    if (blocks !== undefined && hit.blocks.length > 0) {
      throw new KvCacheError(
        'prefix_hit_on_running_request',
        `request ${request.requestId} already holds blocks; prefix hits apply only when it is admitted`,
      );
    }

    const numComputedTokens = request.numComputedTokens + hit.numComputedTokens;
    const numTokensNeedingSlots = Math.min(numComputedTokens + numNewTokens + lookahead, this.maxModelLen);
    const numHeldBlocks = (blocks?.length ?? 0) + hit.blocks.length;
    const numBlocksToAllocate = Math.max(0, Math.ceil(numTokensNeedingSlots / blockSize) - numHeldBlocks);
    let numHitBlocksLeavingFreeQueue = 0;
    for (const block of hit.blocks) if (block.refCount === 0) numHitBlocksLeavingFreeQueue += 1;
    if (numBlocksToAllocate + numHitBlocksLeavingFreeQueue > this.blockPool.numFreeBlocks) return null;

    if (blocks === undefined) {
      blocks = [];
      this.requestBlocks.set(request.requestId, blocks);
      this.numCachedBlocks.set(request.requestId, hit.blocks.length);
      if (hit.blocks.length > 0) {
        this.blockPool.touch(hit.blocks);
        for (const block of hit.blocks) blocks.push(block);
      }
    }
    const newBlocks = numBlocksToAllocate === 0 ? noBlocks : this.blockPool.getNewBlocks(numBlocksToAllocate);
    for (const block of newBlocks) blocks.push(block);

    if (this.enablePrefixCaching) {
      updateBlockHashes(request, blockSize);
      const numFullBlocks = Math.min(
        Math.floor((numComputedTokens + numNewTokens) / blockSize),
        request.blockHashes.length,
        blocks.length,
      );
      const numCached = this.numCachedBlocks.get(request.requestId)!;
      if (numFullBlocks > numCached) {
        this.blockPool.cacheFullBlocks(blocks, request.blockHashes, numCached, numFullBlocks, blockSize);
        this.numCachedBlocks.set(request.requestId, numFullBlocks);
      }
    }
    return newBlocks;
  }

  /** Releases a request's blocks, tail first, so its tail is evicted before its (more shareable) head. */
  free(request: KVCacheRequest | string): void {
    const requestId = typeof request === 'string' ? request : request.requestId;
    const blocks = this.requestBlocks.get(requestId);
    if (blocks === undefined) return;
    this.requestBlocks.delete(requestId);
    this.numCachedBlocks.delete(requestId);
    this.blockPool.freeBlocks(blocks.reverse());
  }

  /** The blocks a request holds, in token order (its block table). */
  getBlocks(requestId: string): readonly KVCacheBlock[] {
    return this.requestBlocks.get(requestId) ?? noBlocks;
  }

  /** The ids of the blocks a request holds, in token order. */
  getBlockIds(requestId: string): number[] {
    return this.getBlocks(requestId).map((block) => block.blockId);
  }

  /** The number of requests holding blocks. */
  get numRequests(): number {
    return this.requestBlocks.size;
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


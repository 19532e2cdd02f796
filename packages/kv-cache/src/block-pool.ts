import type { BlockHash } from './block-hash';
import { KvCacheError } from './errors';

/**
 * One block of `blockSize` token slots. Blocks are made once, when the pool is, and reused for its lifetime; the
 * `previousFree` / `nextFree` links make the free queue intrusive, so moving a block costs no allocation.
 */
export class KVCacheBlock {
  /** The number of requests that hold this block. 0 means it is in the free queue. */
  refCount = 0;
  /** Set while the block is full and findable by prefix lookups; cleared when the block is evicted for reuse. */
  blockHash: BlockHash | undefined = undefined;
  /** @internal */
  previousFree: KVCacheBlock | undefined = undefined;
  /** @internal */
  nextFree: KVCacheBlock | undefined = undefined;

  constructor(readonly blockId: number) {}
}

/**
 * A doubly linked list of free blocks, threaded through the blocks themselves. Its order is the eviction order:
 * blocks are taken from the front (least recently freed) and freed blocks join at the back.
 *
 * ```
 *  head ⇄ [b7] ⇄ [b2] ⇄ [b9] ⇄ tail        popFront() → b7;  append(b4) → … ⇄ [b9] ⇄ [b4] ⇄ tail
 * ```
 */
export class FreeBlockQueue {
  private readonly head = new KVCacheBlock(-1);
  private readonly tail = new KVCacheBlock(-1);
  length = 0;

  constructor(blocks: readonly KVCacheBlock[]) {
    this.head.nextFree = this.tail;
    this.tail.previousFree = this.head;
    for (const block of blocks) this.append(block);
  }

  popFront(): KVCacheBlock {
    const block = this.head.nextFree!;
    if (block === this.tail) throw new KvCacheError('free_queue_empty', 'no free block left to pop');
    this.remove(block);
    return block;
  }

  /** Unlinks a block from anywhere in the queue (a prefix-cache hit on a free block). */
  remove(block: KVCacheBlock): void {
    const previous = block.previousFree;
    const next = block.nextFree;
    if (previous === undefined || next === undefined) {
      throw new KvCacheError('block_not_free', `block ${block.blockId} is not in the free queue`);
    }
    previous.nextFree = next;
    next.previousFree = previous;
    block.previousFree = undefined;
    block.nextFree = undefined;
    this.length -= 1;
  }

  append(block: KVCacheBlock): void {
    const last = this.tail.previousFree!;
    last.nextFree = block;
    block.previousFree = last;
    block.nextFree = this.tail;
    this.tail.previousFree = block;
    this.length += 1;
  }

  /** The free blocks from front (next to be evicted) to back. */
  *[Symbol.iterator](): IterableIterator<KVCacheBlock> {
    for (let block = this.head.nextFree!; block !== this.tail; block = block.nextFree!) yield block;
  }
}

/** What the pool reports when blocks become findable or stop being findable by their hash. */
export type KVCacheEvent =
  | { type: 'block-stored'; blockHashes: BlockHash[]; parentBlockHash: BlockHash | undefined; blockSize: number }
  | { type: 'block-removed'; blockHashes: BlockHash[] }
  | { type: 'all-blocks-cleared' };

/**
 * Every KV block of one cache: reference counts, the free queue (LRU eviction order) and, with prefix caching on,
 * the map from block hash to the block that holds that prefix. A freed block keeps its hash and stays findable until
 * it is taken for reuse.
 */
export class BlockPool {
  readonly blocks: readonly KVCacheBlock[];
  private readonly freeQueue: FreeBlockQueue;
  /** Usually one block per hash; more when requests computed the same prefix side by side. */
  private readonly cachedBlocks = new Map<BlockHash, KVCacheBlock | KVCacheBlock[]>();
  private events: KVCacheEvent[] = [];

  constructor(
    readonly numBlocks: number,
    readonly enableCaching = true,
    private readonly enableEvents = false,
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) {
      throw new KvCacheError('invalid_num_blocks', `numBlocks must be a positive integer, got ${numBlocks}`);
    }
    const blocks: KVCacheBlock[] = [];
    for (let blockId = 0; blockId < numBlocks; blockId += 1) blocks.push(new KVCacheBlock(blockId));
    this.blocks = blocks;
    this.freeQueue = new FreeBlockQueue(blocks);
  }

  get numFreeBlocks(): number {
    return this.freeQueue.length;
  }

  /** The fraction of blocks in use, in [0, 1]. */
  get usage(): number {
    return 1 - this.freeQueue.length / this.numBlocks;
  }

  /** The block that holds the prefix named by `blockHash`, if it is still cached. */
  getCachedBlock(blockHash: BlockHash): KVCacheBlock | undefined {
    const cached = this.cachedBlocks.get(blockHash);
    return Array.isArray(cached) ? cached[0] : cached;
  }

  /**
   * Takes `count` blocks from the front of the free queue, evicting their cached hashes, each with reference count
   * 1. Asking for more than are free is a broken invariant (callers check `numFreeBlocks` first), so it throws.
   */
  getNewBlocks(count: number): KVCacheBlock[] {
    if (count > this.freeQueue.length) {
      throw new KvCacheError(
        'out_of_blocks',
        `asked for ${count} blocks but only ${this.freeQueue.length} are free`,
      );
    }
    const taken = new Array<KVCacheBlock>(count);
    for (let index = 0; index < count; index += 1) {
      const block = this.freeQueue.popFront();
      this.evict(block);
      block.refCount = 1;
      taken[index] = block;
    }
    return taken;
  }

  /** Takes a reference on blocks found by a prefix lookup; a free one leaves the free queue. */
  touch(blocks: readonly KVCacheBlock[]): void {
    for (const block of blocks) {
      if (block.refCount === 0) this.freeQueue.remove(block);
      block.refCount += 1;
    }
  }

  /**
   * Drops a reference on each block; blocks that reach 0 join the back of the free queue in the order given. The
   * manager passes a request's blocks tail first, so a freed request's tail is evicted before its head (its head
   * is the prefix most likely to be shared).
   */
  freeBlocks(orderedBlocks: readonly KVCacheBlock[]): void {
    for (const block of orderedBlocks) {
      if (block.refCount <= 0) {
        throw new KvCacheError('double_free', `block ${block.blockId} freed with reference count ${block.refCount}`);
      }
      block.refCount -= 1;
      if (block.refCount === 0) this.freeQueue.append(block);
    }
  }

  /**
   * Makes full blocks `[start, end)` findable by their hashes; `blocks[i]` holds the tokens `blockHashes[i]` names.
   * Two requests that computed the same prefix side by side hold two blocks with one hash: both are registered,
   * so the prefix stays findable for as long as either is.
   */
  cacheFullBlocks(blocks: readonly KVCacheBlock[], blockHashes: readonly BlockHash[], start: number, end: number, blockSize: number): void {
    if (!this.enableCaching) return;
    const stored: BlockHash[] | undefined = this.enableEvents ? [] : undefined;
    for (let index = start; index < end; index += 1) {
      const block = blocks[index]!;
      const blockHash = blockHashes[index]!;
      if (block.blockHash !== undefined) continue;
      block.blockHash = blockHash;
      const existing = this.cachedBlocks.get(blockHash);
      if (existing === undefined) this.cachedBlocks.set(blockHash, block);
      else if (Array.isArray(existing)) existing.push(block);
      else this.cachedBlocks.set(blockHash, [existing, block]);
      stored?.push(blockHash);
    }
    if (stored !== undefined && stored.length > 0) {
      this.events.push({
        type: 'block-stored',
        blockHashes: stored,
        parentBlockHash: start > 0 ? blockHashes[start - 1] : undefined,
        blockSize,
      });
    }
  }

  /**
   * Forgets every cached hash. Only possible while no block is in use (a running request's blocks may be
   * shared); returns whether it happened.
   */
  resetPrefixCache(): boolean {
    if (this.freeQueue.length !== this.numBlocks) return false;
    for (const block of this.blocks) block.blockHash = undefined;
    this.cachedBlocks.clear();
    if (this.enableEvents) this.events.push({ type: 'all-blocks-cleared' });
    return true;
  }

  /** Returns and clears the events recorded since the last call (only recorded when events are enabled). */
  takeEvents(): KVCacheEvent[] {
    const events = this.events;
    this.events = [];
    return events;
  }

  private evict(block: KVCacheBlock): void {
    const blockHash = block.blockHash;
    if (blockHash === undefined) return;
    block.blockHash = undefined;
    const cached = this.cachedBlocks.get(blockHash);
    if (Array.isArray(cached)) {
      cached.splice(cached.indexOf(block), 1);
      if (cached.length === 1) this.cachedBlocks.set(blockHash, cached[0]!);
      // Another block still holds this prefix: it has not left the cache.
      return;
    }
    this.cachedBlocks.delete(blockHash);
    if (this.enableEvents) this.events.push({ type: 'block-removed', blockHashes: [blockHash] });
  }
}

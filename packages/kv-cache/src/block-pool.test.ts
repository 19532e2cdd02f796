import { describe, expect, it } from 'vitest';
import { BlockPool, hashBlockTokens, KvCacheError } from './index';

const ids = (blocks: readonly { blockId: number }[]) => blocks.map((block) => block.blockId);
const hashOf = (token: number) => hashBlockTokens(undefined, [token], 0, 1);

describe('BlockPool', () => {
  it('makes every block once and hands them out in id order at first', () => {
    const pool = new BlockPool(4);
    expect(ids(pool.getNewBlocks(3))).toEqual([0, 1, 2]);
    expect(pool.numFreeBlocks).toBe(1);
    expect(pool.usage).toBeCloseTo(0.75);
  });

  it('throws, naming the counts, when asked for more blocks than are free', () => {
    const pool = new BlockPool(2);
    expect(() => pool.getNewBlocks(3)).toThrow('asked for 3 blocks but only 2 are free');
    expect(() => pool.getNewBlocks(3)).toThrow(KvCacheError);
  });

  it('reuses freed blocks least recently freed first', () => {
    const pool = new BlockPool(4);
    const [a, b, c, d] = pool.getNewBlocks(4);
    pool.freeBlocks([c!]);
    pool.freeBlocks([a!, d!]);
    pool.freeBlocks([b!]);
    expect(ids(pool.getNewBlocks(4))).toEqual([2, 0, 3, 1]);
  });

  it('keeps a freed block findable by its hash until it is reused, then forgets the hash', () => {
    const pool = new BlockPool(2);
    const [first] = pool.getNewBlocks(1);
    pool.cacheFullBlocks([first!], [hashOf(7)], 0, 1, 1);
    pool.freeBlocks([first!]);
    expect(pool.getCachedBlock(hashOf(7))).toBe(first);
    pool.getNewBlocks(1); // the never-used block 1 goes first
    expect(pool.getCachedBlock(hashOf(7))).toBe(first);
    pool.getNewBlocks(1); // now the cached block is evicted for reuse
    expect(pool.getCachedBlock(hashOf(7))).toBeUndefined();
    expect(first!.blockHash).toBeUndefined();
  });

  it('touching a free cached block takes it out of the free queue; freeing it twice is refused', () => {
    const pool = new BlockPool(3);
    const [block] = pool.getNewBlocks(1);
    pool.freeBlocks([block!]);
    expect(pool.numFreeBlocks).toBe(3);
    pool.touch([block!]);
    expect(block!.refCount).toBe(1);
    expect(pool.numFreeBlocks).toBe(2);
    pool.freeBlocks([block!]);
    expect(() => pool.freeBlocks([block!])).toThrow('block 0 freed with reference count 0');
  });

  it('resets the prefix cache only when no block is in use', () => {
    const pool = new BlockPool(2, true, true);
    const [block] = pool.getNewBlocks(1);
    pool.cacheFullBlocks([block!], [hashOf(1)], 0, 1, 1);
    expect(pool.resetPrefixCache()).toBe(false);
    pool.freeBlocks([block!]);
    expect(pool.resetPrefixCache()).toBe(true);
    expect(pool.getCachedBlock(hashOf(1))).toBeUndefined();
    expect(pool.takeEvents().map((event) => event.type)).toEqual(['block-stored', 'all-blocks-cleared']);
    expect(pool.takeEvents()).toEqual([]);
  });
});

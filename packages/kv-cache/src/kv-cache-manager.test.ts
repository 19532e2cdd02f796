import { describe, expect, it } from 'vitest';
import { KVCacheManager } from './index';
import { makeRequest, range, type TestRequest } from './test-requests';

const blockSize = 16;
const newManager = (numBlocks = 16, options: { enablePrefixCaching?: boolean; enableEvents?: boolean } = {}) =>
  new KVCacheManager({ numBlocks, blockSize, maxModelLen: 1024, ...options });

/** Admits a request as the scheduler does: prefix lookup, then allocation of the rest of its prompt. */
function admit(manager: KVCacheManager, request: TestRequest) {
  const hit = manager.getComputedBlocks(request);
  const newBlocks = manager.allocateSlots(request, request.tokenIds.length - hit.numComputedTokens, { newComputedBlocks: hit });
  if (newBlocks !== null) {
    request.numComputedTokens = request.tokenIds.length; // the step ran: the prompt's keys and values are written
    manager.cacheBlocks(request);
  }
  return { hit, newBlocks };
}

describe('KVCacheManager', () => {
  it('allocates ceil(tokens / blockSize) blocks for a prompt and lays them out in token order', () => {
    const manager = newManager();
    const request = makeRequest('a', range(40));
    const { newBlocks } = admit(manager, request);
    expect(newBlocks!.map((block) => block.blockId)).toEqual([0, 1, 2]);
    expect(manager.getBlockIds('a')).toEqual([0, 1, 2]);
    expect(manager.numFreeBlocks).toBe(13);
  });

  it('gives a decode step a new block only when the last one is full', () => {
    const manager = newManager();
    const request = makeRequest('a', range(31));
    admit(manager, request);
    request.tokenIds.push(500); // token 31 fills block 1
    expect(manager.allocateSlots(request, 1)).toEqual([]);
    request.numComputedTokens += 1;
    request.tokenIds.push(501); // token 32 starts block 2
    expect(manager.allocateSlots(request, 1)!.map((block) => block.blockId)).toEqual([2]);
  });

  it('finds another request’s full blocks as a prefix hit, sharing them', () => {
    const manager = newManager();
    const first = makeRequest('first', range(40));
    admit(manager, first);
    const second = makeRequest('second', [...range(32), 900, 901]);
    const { hit } = admit(manager, second);
    expect(hit.numComputedTokens).toBe(32);
    expect(hit.blocks.map((block) => block.blockId)).toEqual([0, 1]);
    expect(manager.getBlockIds('second').slice(0, 2)).toEqual([0, 1]);
    expect(hit.blocks.every((block) => block.refCount === 2)).toBe(true);
    expect(manager.prefixCacheStats).toEqual({ requests: 2, queries: 74, hits: 32 });
  });

  it('never reports the whole prompt as cached: the last token is always computed', () => {
    const manager = newManager();
    admit(manager, makeRequest('first', range(48)));
    const same = makeRequest('same', range(32));
    expect(manager.getComputedBlocks(same).numComputedTokens).toBe(16);
  });

  it('keeps freed blocks findable until reused', () => {
    const manager = newManager();
    const first = makeRequest('first', range(33));
    admit(manager, first);
    manager.free(first);
    expect(manager.numFreeBlocks).toBe(16);
    const again = makeRequest('again', range(33));
    expect(admit(manager, again).hit.numComputedTokens).toBe(32);
  });

  it('evicts a freed request’s tail block before its head', () => {
    const manager = newManager(4);
    const first = makeRequest('first', range(64)); // blocks 0..3, all full; 3 hold the 48 hittable tokens
    admit(manager, first);
    manager.free(first);
    const other = makeRequest('other', range(16, 10_000)); // takes one block: the tail (block 3)
    admit(manager, other);
    expect(manager.getBlockIds('other')).toEqual([3]);
    expect(manager.getComputedBlocks(makeRequest('probe', range(64))).numComputedTokens).toBe(48);
  });

  it('caches only computed blocks: a block still being written is not findable', () => {
    const manager = newManager();
    const first = makeRequest('first', range(40));
    manager.allocateSlots(first, 40); // scheduled, not yet computed
    expect(manager.getComputedBlocks(makeRequest('probe', range(40))).numComputedTokens).toBe(0);
    first.numComputedTokens = 40;
    manager.cacheBlocks(first);
    expect(manager.getComputedBlocks(makeRequest('probe', range(40))).numComputedTokens).toBe(32);
  });

  it('caches a request’s computed blocks when it is freed', () => {
    const manager = newManager();
    const first = makeRequest('first', range(40));
    manager.allocateSlots(first, 40);
    first.numComputedTokens = 40;
    manager.free(first);
    expect(manager.getComputedBlocks(makeRequest('probe', range(40))).numComputedTokens).toBe(32);
  });

  it('returns null, changing nothing, when the blocks do not fit', () => {
    const manager = newManager(4);
    admit(manager, makeRequest('big', range(48)));
    const request = makeRequest('late', range(40, 5000));
    expect(manager.allocateSlots(request, 40)).toBeNull();
    expect(manager.numFreeBlocks).toBe(1);
    expect(manager.getBlockIds('late')).toEqual([]);
  });

  it('counts prefix-hit blocks that sit in the free queue against the free blocks', () => {
    const manager = newManager(3);
    const first = makeRequest('first', range(33));
    admit(manager, first);
    manager.free(first); // 3 free, 2 of them cached
    const second = makeRequest('second', [...range(32), ...range(40, 7000)]); // hits 2, needs 3 more: 5 > 3
    const hit = manager.getComputedBlocks(second);
    expect(hit.blocks).toHaveLength(2);
    expect(manager.allocateSlots(second, 40, { newComputedBlocks: hit })).toBeNull();
    expect(manager.numFreeBlocks).toBe(3);
    expect(hit.blocks.every((block) => block.refCount === 0)).toBe(true);
  });

  it('does not look anything up with prefix caching off', () => {
    const manager = newManager(16, { enablePrefixCaching: false });
    admit(manager, makeRequest('first', range(40)));
    expect(manager.getComputedBlocks(makeRequest('second', range(40))).numComputedTokens).toBe(0);
  });

  it('does not share prefixes across cache salts', () => {
    const manager = newManager();
    admit(manager, makeRequest('first', range(40), 'tenant-a'));
    expect(manager.getComputedBlocks(makeRequest('b', range(40), 'tenant-b')).numComputedTokens).toBe(0);
    expect(manager.getComputedBlocks(makeRequest('a', range(40), 'tenant-a')).numComputedTokens).toBe(32);
  });

  it('caps slots at max_model_len', () => {
    const manager = new KVCacheManager({ numBlocks: 8, blockSize, maxModelLen: 20 });
    const request = makeRequest('a', range(16));
    admit(manager, request);
    request.tokenIds.push(1);
    expect(manager.allocateSlots(request, 1, { numLookaheadTokens: 100 })!.length).toBe(1);
    expect(manager.getBlockIds('a')).toHaveLength(2);
  });

  it('reports stored and removed blocks as events', () => {
    const manager = newManager(2, { enableEvents: true });
    const first = makeRequest('first', range(16));
    admit(manager, first);
    first.tokenIds.push(99);
    manager.allocateSlots(first, 1);
    first.numComputedTokens += 1;
    manager.free(first);
    admit(manager, makeRequest('second', range(32, 1000)));
    expect(manager.takeEvents().map((event) => event.type)).toEqual(['block-stored', 'block-removed', 'block-stored']);
  });

  it('resets the prefix cache only once every request is freed', () => {
    const manager = newManager();
    const first = makeRequest('first', range(40));
    admit(manager, first);
    expect(manager.resetPrefixCache()).toBe(false);
    manager.free(first);
    expect(manager.resetPrefixCache()).toBe(true);
    expect(manager.getComputedBlocks(makeRequest('again', range(40))).numComputedTokens).toBe(0);
  });
});

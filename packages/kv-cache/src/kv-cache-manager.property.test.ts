import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KVCacheManager } from './index';
import { makeRequest, type TestRequest } from './test-requests';

const blockSize = 4;
const numBlocks = 24;
const maxModelLen = 96;

/** Three base sequences; prompts take a prefix of one, then a random tail, so prefixes are often shared. */
const bases = [0, 1, 2].map((base) => Array.from({ length: 64 }, (_, index) => (index * 7 + base * 13) % 5));

type Operation =
  | { kind: 'add'; base: number; prefixLength: number; tail: number[] }
  | { kind: 'decode'; pick: number; token: number }
  | { kind: 'free'; pick: number };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({
    kind: fc.constant('add' as const),
    base: fc.integer({ min: 0, max: 2 }),
    prefixLength: fc.integer({ min: 0, max: 40 }),
    tail: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 8 }),
  }),
  fc.record({ kind: fc.constant('decode' as const), pick: fc.nat(), token: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ kind: fc.constant('decode' as const), pick: fc.nat(), token: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
);

/** Runs a random operation sequence, checking the invariants after every operation. */
function run(operations: Operation[]): void {
  const manager = new KVCacheManager({ numBlocks, blockSize, maxModelLen });
  const live = new Map<string, TestRequest>();
  // What each block holds, as the model runner would have written it: the tokens of the block's slots.
  const written = new Map<number, number[]>();
  let nextId = 0;

  const record = (request: TestRequest) => {
    manager.cacheBlocks(request); // the step computed the request's new tokens
    manager.getBlocks(request.requestId).forEach((block, index) => {
      written.set(block.blockId, request.tokenIds.slice(index * blockSize, Math.min((index + 1) * blockSize, request.numComputedTokens)));
    });
  };

  const checkInvariants = () => {
    const owners = new Map<number, number>();
    for (const request of live.values()) {
      const blocks = manager.getBlocks(request.requestId);
      expect(new Set(blocks).size).toBe(blocks.length); // a request never holds a block twice
      expect(blocks.length).toBe(Math.ceil(request.numComputedTokens / blockSize));
      for (const block of blocks) owners.set(block.blockId, (owners.get(block.blockId) ?? 0) + 1);
    }
    let free = 0;
    for (const block of manager.blockPool.blocks) {
      expect(block.refCount).toBeGreaterThanOrEqual(0);
      expect(block.refCount).toBe(owners.get(block.blockId) ?? 0); // no block owned by more holders than it counts
      if (block.refCount === 0) free += 1;
    }
    expect(manager.numFreeBlocks).toBe(free);
  };

  const pick = (index: number) => [...live.values()][index % live.size];

  for (const step of operations) {
    if (step.kind === 'add') {
      const request = makeRequest(`r${nextId++}`, [...bases[step.base]!.slice(0, step.prefixLength), ...step.tail]);
      const freeBefore = manager.numFreeBlocks;
      const hit = manager.getComputedBlocks(request);
      // A hit is exactly the blocks whose contents are this prompt's tokens, never the last token.
      expect(hit.numComputedTokens).toBeLessThan(request.tokenIds.length);
      hit.blocks.forEach((block, index) => {
        expect(written.get(block.blockId)).toEqual(request.tokenIds.slice(index * blockSize, (index + 1) * blockSize));
      });
      // Every live request's computed full blocks are findable: the hit covers at least the shared full blocks.
      for (const other of live.values()) {
        let shared = 0;
        const limit = Math.min(Math.floor(other.numComputedTokens / blockSize), Math.floor((request.tokenIds.length - 1) / blockSize));
        while (shared < limit && other.tokenIds.slice(shared * blockSize, (shared + 1) * blockSize).join() === request.tokenIds.slice(shared * blockSize, (shared + 1) * blockSize).join()) shared += 1;
        expect(hit.blocks.length).toBeGreaterThanOrEqual(shared);
      }
      const newBlocks = manager.allocateSlots(request, request.tokenIds.length - hit.numComputedTokens, { newComputedBlocks: hit });
      if (newBlocks === null) {
        expect(manager.numFreeBlocks).toBe(freeBefore);
        expect(manager.getBlocks(request.requestId)).toHaveLength(0);
      } else {
        for (const block of newBlocks) written.set(block.blockId, []);
        request.numComputedTokens = request.tokenIds.length;
        live.set(request.requestId, request);
        record(request);
      }
    } else if (live.size > 0) {
      const request = pick(step.pick)!;
      if (step.kind === 'free' || request.tokenIds.length >= maxModelLen) {
        manager.free(request);
        live.delete(request.requestId);
      } else {
        request.tokenIds.push(step.token);
        const newBlocks = manager.allocateSlots(request, 1);
        if (newBlocks === null) {
          // Preempted by recompute: its blocks go back, its tokens stay with it.
          manager.free(request);
          live.delete(request.requestId);
        } else {
          for (const block of newBlocks) written.set(block.blockId, []);
          request.numComputedTokens += 1;
          record(request);
        }
      }
    }
    checkInvariants();
  }

  for (const request of live.values()) manager.free(request);
  expect(manager.numFreeBlocks).toBe(numBlocks);
  expect(manager.blockPool.blocks.every((block) => block.refCount === 0)).toBe(true);
}

describe('KVCacheManager under random allocate / decode / free / prefix-hit sequences', () => {
  it('keeps reference counts exact, hits sound and complete, and frees every block at the end', () => {
    fc.assert(fc.property(fc.array(operation, { minLength: 1, maxLength: 120 }), run), { numRuns: 300, seed: 20261127 });
  });

  it('also holds for sequences drawn afresh on every run', () => {
    fc.assert(fc.property(fc.array(operation, { minLength: 1, maxLength: 120 }), run), { numRuns: 100 });
  });
});

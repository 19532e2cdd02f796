import { describe, expect, it } from 'vitest';
import { hashBlockTokens, updateBlockHashes } from './index';
import { makeRequest, range } from './test-requests';

describe('block hashes', () => {
  it('are 32-byte sha256 digests, equal for equal prefixes', () => {
    const first = hashBlockTokens(undefined, range(16), 0, 16);
    expect(first).toHaveLength(32);
    expect(hashBlockTokens(undefined, range(16), 0, 16)).toBe(first);
  });

  it('chain: the same tokens after a different parent hash differently', () => {
    const parentA = hashBlockTokens(undefined, [1, 2], 0, 2);
    const parentB = hashBlockTokens(undefined, [1, 3], 0, 2);
    expect(hashBlockTokens(parentA, [5, 6], 0, 2)).not.toBe(hashBlockTokens(parentB, [5, 6], 0, 2));
    expect(hashBlockTokens(undefined, [5, 6], 0, 2)).not.toBe(hashBlockTokens(parentA, [5, 6], 0, 2));
  });

  it('tell token ids apart that a string join would confuse', () => {
    expect(hashBlockTokens(undefined, [1, 23], 0, 2)).not.toBe(hashBlockTokens(undefined, [12, 3], 0, 2));
  });

  it('mix the extra keys (cache salt) into the chain', () => {
    const plain = makeRequest('a', range(32));
    const salted = makeRequest('b', range(32), 'salt-1');
    updateBlockHashes(plain, 16);
    updateBlockHashes(salted, 16);
    expect(salted.blockHashes[0]).not.toBe(plain.blockHashes[0]);
    expect(salted.blockHashes[1]).not.toBe(plain.blockHashes[1]);
  });

  it('are computed once per full block, as tokens arrive', () => {
    const request = makeRequest('a', range(20));
    updateBlockHashes(request, 16);
    expect(request.blockHashes).toHaveLength(1);
    const first = request.blockHashes[0];
    request.tokenIds.push(...range(12, 100));
    updateBlockHashes(request, 16);
    expect(request.blockHashes).toHaveLength(2);
    expect(request.blockHashes[0]).toBe(first);
    expect(request.blockHashes[1]).toBe(hashBlockTokens(first, request.tokenIds, 16, 32));
  });
});

import type { BlockHash, KVCacheRequest } from './index';

/** A mutable request for tests: the scheduler's role (appending tokens, advancing numComputedTokens) by hand. */
export interface TestRequest extends KVCacheRequest {
  tokenIds: number[];
  blockHashes: BlockHash[];
  numComputedTokens: number;
}

export function makeRequest(requestId: string, tokenIds: number[], extraKeys?: string): TestRequest {
  return { requestId, tokenIds: [...tokenIds], blockHashes: [], numComputedTokens: 0, extraKeys };
}

/** Token ids 0, 1, 2, … offset by `start`. */
export function range(length: number, start = 0): number[] {
  return Array.from({ length }, (_, index) => start + index);
}

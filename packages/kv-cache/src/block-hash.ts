import { createHash } from 'node:crypto';

/**
 * The hash of a full block, chained: it covers the parent block's hash, this block's token ids and any extra keys
 * (such as a cache salt), so one hash names a whole prefix. It is a sha256 digest held as a 32-character binary
 * (latin1) string: cheap to use as a Map key and to feed into the next block's hash.
 */
export type BlockHash = string & { readonly __blockHash: unique symbol };

/** What a request exposes so its block hashes can be kept up to date as its tokens arrive. */
export interface HashableRequest {
  /** Every token of the request so far: prompt, then generated tokens. */
  readonly tokenIds: ArrayLike<number>;
  /** The hashes of the request's full blocks, in order; extended in place, never recomputed. */
  readonly blockHashes: BlockHash[];
  /** Mixed into the first block's hash (so into every hash of the chain); e.g. a cache salt. */
  readonly extraKeys?: string | undefined;
}

const scratch = new Int32Array(256);

/** Hashes one full block: sha256(parent hash ‖ token ids as little-endian int32 ‖ extra keys). */
export function hashBlockTokens(
  parentHash: BlockHash | undefined,
  tokenIds: ArrayLike<number>,
  start: number,
  end: number,
  extraKeys?: string,
): BlockHash {
  const length = end - start;
  const words = length <= scratch.length ? scratch : new Int32Array(length);
  for (let index = 0; index < length; index += 1) words[index] = tokenIds[start + index]!;
  const hash = createHash('sha256');
  // A fixed-size prefix (0 or 32 bytes) keeps "no parent" distinct from any parent.
  hash.update(parentHash === undefined ? '\u0000' : `\u0001${parentHash}`, 'latin1');
  hash.update(new Uint8Array(words.buffer, words.byteOffset, length * 4));
  if (extraKeys !== undefined) hash.update(`\u0002${extraKeys}`, 'utf8');
  return hash.digest('binary') as BlockHash;
}

/**
 * Appends the hashes of the request's newly full blocks to `request.blockHashes`. Each block is hashed once, when
 * its last token arrives; calling this again with no new full block costs one comparison.
 */
export function updateBlockHashes(request: HashableRequest, blockSize: number): void {
  const hashes = request.blockHashes;
  const numFullBlocks = Math.floor(request.tokenIds.length / blockSize);
  for (let blockIndex = hashes.length; blockIndex < numFullBlocks; blockIndex += 1) {
    const start = blockIndex * blockSize;
    hashes.push(
      hashBlockTokens(
        blockIndex === 0 ? undefined : hashes[blockIndex - 1],
        request.tokenIds,
        start,
        start + blockSize,
        blockIndex === 0 ? request.extraKeys : undefined,
      ),
    );
  }
}

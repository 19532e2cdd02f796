// KV cache manager costs at serving scale: 256 concurrent requests decoding 512 tokens each at block size 16
// (allocateSlots per decode step, block hashing per block, measured apart as vLLM splits them), and the lookup of a
// 4,096-token cached prefix whose hashes are already computed.
import { type BlockHash, KVCacheManager, type KVCacheRequest, updateBlockHashes } from '@pagoda/kv-cache';
import { timeMicroseconds } from './timing';

interface BenchRequest extends KVCacheRequest {
  tokenIds: number[];
  blockHashes: BlockHash[];
  numComputedTokens: number;
}

const makeRequest = (requestId: string, tokenIds: number[]): BenchRequest => ({ requestId, tokenIds, blockHashes: [], numComputedTokens: 0 });

export default async function kvCacheBenchmark(args: string[]): Promise<object> {
  const numRequests = Number(args[0] ?? 256);
  const decodeTokens = Number(args[1] ?? 512);
  const promptTokens = 128;
  const blockSize = 16;
  const blocksPerRequest = Math.ceil((promptTokens + decodeTokens) / blockSize);
  const manager = new KVCacheManager({ numBlocks: numRequests * blocksPerRequest + 16, blockSize, maxModelLen: 8192 });

  const requests: BenchRequest[] = [];
  for (let index = 0; index < numRequests; index += 1) {
    const request = makeRequest(`r${index}`, Array.from({ length: promptTokens }, (_, position) => index * 100_000 + position));
    const hit = manager.getComputedBlocks(request);
    if (manager.allocateSlots(request, promptTokens - hit.numComputedTokens, { newComputedBlocks: hit }) === null) throw new Error('prefill did not fit');
    request.numComputedTokens = promptTokens;
    requests.push(request);
  }

  let allocateNs = 0n;
  let hashNs = 0n;
  let blocksHashed = 0;
  let allocations = 0;
  for (let step = 0; step < decodeTokens; step += 1) {
    // The sampled tokens arrive; each newly full block is hashed once (the request's job, as in vLLM).
    const hashStart = process.hrtime.bigint();
    for (const request of requests) {
      request.tokenIds.push(step);
      const before = request.blockHashes.length;
      updateBlockHashes(request, blockSize);
      blocksHashed += request.blockHashes.length - before;
    }
    hashNs += process.hrtime.bigint() - hashStart;
    // The scheduler's decode step: one slot per request.
    const allocateStart = process.hrtime.bigint();
    for (const request of requests) {
      if (manager.allocateSlots(request, 1) === null) throw new Error('decode did not fit');
      request.numComputedTokens += 1;
    }
    allocateNs += process.hrtime.bigint() - allocateStart;
    allocations += requests.length;
  }
  for (const request of requests) manager.free(request);

  // A 4,096-token prefix, cached by one request, looked up by another whose hashes are already computed.
  const prefixTokens = Array.from({ length: 4097 }, (_, position) => 7_000_000 + position);
  const owner = makeRequest('owner', [...prefixTokens]);
  manager.allocateSlots(owner, owner.tokenIds.length);
  owner.numComputedTokens = owner.tokenIds.length; // the prefill step ran
  manager.cacheBlocks(owner);
  const probe = makeRequest('probe', [...prefixTokens]);
  updateBlockHashes(probe, blockSize);
  let hitTokens = 0;
  const lookup = timeMicroseconds(() => {
    hitTokens = manager.getComputedBlocks(probe).numComputedTokens;
  }, { iterations: 2000, warmup: 200 });
  const hashing4096 = timeMicroseconds(() => {
    const fresh = makeRequest('fresh', prefixTokens);
    updateBlockHashes(fresh, blockSize);
  }, { iterations: 200, warmup: 20 });

  const result = {
    numRequests,
    decodeTokens,
    blockSize,
    allocateSlotsPerDecodeStepUs: Number(allocateNs) / 1000 / allocations,
    hashPerBlockUs: Number(hashNs) / 1000 / blocksHashed,
    blocksHashed,
    prefixLookup4096Us: lookup.medianUs,
    prefixLookupHitTokens: hitTokens,
    hashing4096TokensUs: hashing4096.medianUs,
    goals: { allocateSlotsUs: 2, prefixLookup4096Us: 50 },
  };
  console.log(
    `allocateSlots ${result.allocateSlotsPerDecodeStepUs.toFixed(3)} µs/decode step · hashing ${result.hashPerBlockUs.toFixed(2)} µs/block · ` +
      `4,096-token prefix lookup ${result.prefixLookup4096Us.toFixed(1)} µs (${hitTokens} tokens hit)`,
  );
  return result;
}

import { KvCacheCapacityError, KvCacheError } from './errors';
import { kvCacheBytesPerBlock, kvCacheBytesPerToken, type KvCacheShape } from './kv-cache-size';

interface PlanShape extends KvCacheShape {
  blockSize: number;
  maxModelLen: number;
  /** Reported with the plan (vLLM's max_num_seqs); the KV cache does not reserve room for it. */
  maxNumSeqs?: number;
}

/** The budget is the whole memory budget (weights and activations come out of it). */
interface WholeBudget {
  memoryBytes: number;
  weightsBytes: number;
  activationPeakBytes: number;
}

/** The budget is `gpuMemoryUtilization × deviceMemoryBytes`, as `--gpu-memory-utilization` means in vLLM. */
interface DeviceBudget {
  deviceMemoryBytes: number;
  gpuMemoryUtilization: number;
  weightsBytes: number;
  activationPeakBytes: number;
}

/** The KV cache's own size is given directly (`--kv-cache-memory`). */
interface KvCacheBudget {
  kvCacheMemoryBytes: number;
}

export type PlanKvCacheOptions = PlanShape & (WholeBudget | DeviceBudget | KvCacheBudget);

export interface KvCachePlan {
  numBlocks: number;
  blockSize: number;
  bytesPerBlock: number;
  bytesPerToken: number;
  /** The bytes the KV cache gets (before rounding down to whole blocks). */
  availableBytes: number;
  /** numBlocks × bytesPerBlock. */
  kvCacheBytes: number;
  /** Token slots in the cache: numBlocks × blockSize. */
  maxTokens: number;
  /** How many requests of maxModelLen tokens fit at once (vLLM's "maximum concurrency"). */
  maxConcurrency: number;
  maxModelLen: number;
  maxNumSeqs: number | undefined;
}

/**
 * Plans the KV cache: the memory budget minus the weights and the activation peak, cut into blocks. Refuses, with
 * a message saying what to change, a budget in which not even one request of `maxModelLen` tokens fits.
 */
export function planKvCache(options: PlanKvCacheOptions): KvCachePlan {
  const { blockSize, maxModelLen } = options;
  requirePositiveInteger('max_model_len', maxModelLen);
  const bytesPerToken = kvCacheBytesPerToken(options);
  const bytesPerBlock = kvCacheBytesPerBlock(options, blockSize);

  let availableBytes: number;
  let budgetHint: string;
  if ('kvCacheMemoryBytes' in options) {
    requireNonNegative('kv_cache_memory', options.kvCacheMemoryBytes);
    availableBytes = options.kvCacheMemoryBytes;
    budgetHint = 'raise --kv-cache-memory';
  } else {
    let budget: number;
    if ('deviceMemoryBytes' in options) {
      const utilization = options.gpuMemoryUtilization;
      if (!(utilization > 0 && utilization <= 1)) {
        throw new KvCacheError('invalid_gpu_memory_utilization', `gpu_memory_utilization must be in (0, 1], got ${utilization}`);
      }
      requireNonNegative('device memory', options.deviceMemoryBytes);
      budget = utilization * options.deviceMemoryBytes;
      budgetHint = 'raise gpu_memory_utilization';
    } else {
      requireNonNegative('memory budget', options.memoryBytes);
      budget = options.memoryBytes;
      budgetHint = 'raise the KV cache memory budget';
    }
    requireNonNegative('weights bytes', options.weightsBytes);
    requireNonNegative('activation peak bytes', options.activationPeakBytes);
    availableBytes = budget - options.weightsBytes - options.activationPeakBytes;
    if (availableBytes <= 0) {
      throw new KvCacheCapacityError(
        `no memory is left for the KV cache: the budget of ${formatBytes(budget)} is used up by the weights ` +
          `(${formatBytes(options.weightsBytes)}) and the activation peak (${formatBytes(options.activationPeakBytes)}); ` +
          `${budgetHint}, or use a smaller model`,
        bytesPerBlock * Math.ceil(maxModelLen / blockSize),
        Math.max(0, availableBytes),
      );
    }
  }

  const numBlocks = Math.floor(availableBytes / bytesPerBlock);
  const blocksPerFullRequest = Math.ceil(maxModelLen / blockSize);
  if (numBlocks < blocksPerFullRequest) {
    const fittingTokens = numBlocks * blockSize;
    // With no block at all, no max_model_len helps: only a larger budget does.
    const remedy = fittingTokens === 0 ? `not one block of ${formatBytes(bytesPerBlock)} fits; ${budgetHint}` : `${budgetHint}, or lower max_model_len to at most ${fittingTokens}`;
    throw new KvCacheCapacityError(
      `max_model_len ${maxModelLen} needs ${blocksPerFullRequest} KV blocks ` +
        `(${formatBytes(blocksPerFullRequest * bytesPerBlock)}) for one request, but only ${numBlocks} blocks ` +
        `(${formatBytes(availableBytes)}) fit; ${remedy}`,
      blocksPerFullRequest * bytesPerBlock,
      availableBytes,
    );
  }
  const maxTokens = numBlocks * blockSize;
  return {
    numBlocks,
    blockSize,
    bytesPerBlock,
    bytesPerToken,
    availableBytes,
    kvCacheBytes: numBlocks * bytesPerBlock,
    maxTokens,
    maxConcurrency: maxTokens / maxModelLen,
    maxModelLen,
    maxNumSeqs: options.maxNumSeqs,
  };
}

const units: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 2 ** 10, kib: 2 ** 10, mi: 2 ** 20, mib: 2 ** 20, gi: 2 ** 30, gib: 2 ** 30, ti: 2 ** 40, tib: 2 ** 40,
};

/** Parses a memory size: bytes (`1073741824`) or a number with a unit (`4GiB`, `512 MiB`, `1.5GB`). */
export function parseMemorySize(text: string | number): number {
  if (typeof text === 'number') {
    requireNonNegative('memory size', text);
    return Math.floor(text);
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const multiplier = match ? units[match[2]!.toLowerCase()] : undefined;
  if (!match || multiplier === undefined) {
    throw new KvCacheError('invalid_memory_size', `not a memory size: ${JSON.stringify(text)} (expected e.g. 4GiB, 512MiB or a byte count)`);
  }
  return Math.floor(Number(match[1]) * multiplier);
}

/** `1.50 GiB`, `12.00 MiB`, `512 B`. */
export function formatBytes(bytes: number): string {
  const steps: Array<[number, string]> = [[2 ** 40, 'TiB'], [2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']];
  for (const [size, unit] of steps) if (Math.abs(bytes) >= size) return `${(bytes / size).toFixed(2)} ${unit}`;
  return `${bytes} B`;
}

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new KvCacheError('invalid_plan', `${name} must be a positive integer, got ${value}`);
  }
}

function requireNonNegative(name: string, value: number): void {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new KvCacheError('invalid_plan', `${name} must be a non-negative number of bytes, got ${value}`);
  }
}

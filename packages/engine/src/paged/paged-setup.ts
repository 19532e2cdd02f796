import { formatBytes, kvCacheBytesPerBlock, planKvCache, type KvCachePlan } from '@pagoda/kv-cache';
import type { ModelConfig } from '../model/model-config';
import type { ModelWeights } from '../model/weight-tensor';
import type { ModelRunnerRequest } from '../model-step';
import { loadModelWeights } from '../model/model-loader';
import type { Quantization } from '../model/quantization';
import { ModelFiles } from '../model/weight-file';
import { checkStartupFreeMemory, GpuMemoryError, type GpuProbe, planGpuKvBlocks, selectDevice } from './gpu-device';
import { pagedDtypeBytes, type PagedDtype } from './paged-graph';
import { type PagedDevice, PagedModelRunner } from './paged-model-runner';

/** One pool is one tensor made from one zero-filled host buffer; 2 GiB keeps both within Node's and protobuf's limits. */
export const maxPoolBytes = 2 ** 31;

/** What {@link createPagedRunner} needs. */
export interface PagedSetupOptions {
  readonly modelDir: string;
  readonly config: ModelConfig;
  readonly device: PagedDevice;
  readonly dtype: PagedDtype;
  readonly blockSize: number;
  readonly maxModelLen: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly gpuMemoryUtilization: number;
  /** A KV cache of a given size (`--kv-cache-memory`, and always on the CPU); otherwise profiled on the device. */
  readonly kvCache: KvCachePlan | undefined;
  readonly loadFormat: 'safetensors' | 'dummy';
  readonly seed: number;
  /** Weight-only quantization of the checkpoint's float weights (MatMulNBits). */
  readonly quantization?: Quantization;
  /** MatMulNBits' `accuracy_level`. */
  readonly accuracyLevel?: number;
  readonly intraOpNumThreads?: number;
  readonly onProgress?: (loadedBytes: number, totalBytes: number) => void;
  /** Reads device memory (default nvidia-smi); needed only when the KV cache is profiled. */
  readonly probe?: () => GpuProbe;
  /** The most bytes one pool may take (default {@link maxPoolBytes}). */
  readonly maxPoolBytes?: number;
  /** For tests: see PagedModelRunnerOptions.dropPoolWrites. */
  readonly dropPoolWrites?: boolean;
}

/** The runner, the KV cache it was given, and what start-up found, for the log. */
export interface PagedSetup {
  readonly runner: PagedModelRunner;
  readonly kvCache: KvCachePlan;
  readonly log: readonly string[];
}

/**
 * Starts the GPU runner: loads the weights once; when no KV cache size is given, profiles the device as vLLM does
 * (a runner with just enough blocks runs one step of `maxNumBatchedTokens` tokens over up to `maxNumSeqs` requests;
 * what the process then holds, less those blocks, is what everything but the KV cache needs; the rest of
 * `gpuMemoryUtilization × device memory` becomes blocks); then starts the real runner and proves its pools keep
 * their writes (PagedModelRunner.selfCheck), refusing to start otherwise.
 */
export async function createPagedRunner(options: PagedSetupOptions): Promise<PagedSetup> {
  const weights = await loadModelWeights(options.modelDir, options.config, options);
  // The profiling runner and the real one share the weights: each is converted (or quantized) and written once.
  const files = await ModelFiles.create();
  try {
    return await createPagedRunnerOn(options, weights, files);
  } finally {
    await files.remove();
  }
}

async function createPagedRunnerOn(options: PagedSetupOptions, weights: ModelWeights, files: ModelFiles): Promise<PagedSetup> {
  const { config, blockSize } = options;
  const poolByteLimit = options.maxPoolBytes ?? maxPoolBytes;
  const runnerOptions = {
    blockSize,
    files,
    device: options.device,
    maxModelLen: options.maxModelLen,
    ...(options.dtype === 'float32' ? {} : { dtype: options.dtype }),
    ...(options.intraOpNumThreads === undefined ? {} : { intraOpNumThreads: options.intraOpNumThreads }),
    ...(options.dropPoolWrites === undefined ? {} : { dropPoolWrites: options.dropPoolWrites }),
    ...(options.accuracyLevel === undefined ? {} : { accuracyLevel: options.accuracyLevel }),
  };
  const log: string[] = [];
  const shape = { numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim, dtypeBytes: pagedDtypeBytes[options.dtype] };
  const bytesPerBlock = kvCacheBytesPerBlock(shape, blockSize);
  const planBlocks = (numBlocks: number): KvCachePlan =>
    planKvCache({ ...shape, kvCacheMemoryBytes: numBlocks * bytesPerBlock, blockSize, maxModelLen: options.maxModelLen, maxNumSeqs: options.maxNumSeqs });

  let kvCache = options.kvCache;
  if (kvCache === undefined) {
    if (options.probe === undefined) throw new Error('profiling the KV cache needs a device memory probe');
    const probe = options.probe();
    const device = selectDevice(probe.devices());
    checkStartupFreeMemory(device, options.gpuMemoryUtilization);
    const profileRequests = profilingBatch(options);
    const profileBlocks = profileRequests.reduce((sum, request) => sum + request.blockTable.length, 0);
    const profiler = await PagedModelRunner.create(config, weights, { ...runnerOptions, numBlocks: profileBlocks });
    let processUsed: number;
    try {
      await profiler.execute(profileRequests);
      processUsed = probe.processUsedBytes(process.pid) ?? selectDevice(probe.devices()).usedBytes - device.usedBytes;
    } finally {
      await profiler.release();
    }
    const plan = planGpuKvBlocks({
      device,
      gpuMemoryUtilization: options.gpuMemoryUtilization,
      processUsedAfterProfileBytes: processUsed,
      profilePoolBytes: profiler.poolBytes,
      weightsBytes: profiler.weightBytes,
      bytesPerBlock,
      maxPoolBytes: poolByteLimit,
      numPools: 2 * config.numLayers,
    });
    log.push(`${plan.log} (profiled with ${options.maxNumBatchedTokens} tokens over ${profileRequests.length} requests)`);
    const blocksPerRequest = Math.ceil(options.maxModelLen / blockSize);
    if (plan.numBlocks < blocksPerRequest) {
      throw new GpuMemoryError(
        `max_model_len ${options.maxModelLen} needs ${blocksPerRequest} KV blocks for one request, but only ${plan.numBlocks} fit ` +
          `(${plan.log}); raise --gpu-memory-utilization, or lower --max-model-len to at most ${plan.numBlocks * blockSize}`,
        blocksPerRequest * bytesPerBlock,
        plan.numBlocks * bytesPerBlock,
      );
    }
    kvCache = planBlocks(plan.numBlocks);
  }

  // One pool is one tensor made from one host buffer: a given kv_cache_memory may ask for more than one can hold.
  const poolLimitBlocks = Math.floor(poolByteLimit / (bytesPerBlock / (2 * config.numLayers)));
  if (kvCache.numBlocks > poolLimitBlocks) {
    log.push(
      `the KV cache is capped at ${poolLimitBlocks} blocks (asked for ${kvCache.numBlocks}): one layer's key or value pool may hold at most ${formatBytes(poolByteLimit)}`,
    );
    kvCache = planBlocks(poolLimitBlocks);
  }
  const runner = await PagedModelRunner.create(config, weights, { ...runnerOptions, numBlocks: kvCache.numBlocks });
  try {
    const check = await runner.selfCheck();
    log.push(
      `KV pools on ${options.device} (${options.dtype}, ${formatBytes(runner.poolBytes)}) keep their writes between runs: ` +
        `a decode over them matches one run within ${check.error.toExponential(1)} of the logits' scale (allowed ${check.tolerance}` +
        `${check.lostWritesError === undefined ? '' : `; lost writes would give ${check.lostWritesError.toExponential(1)}`})`,
    );
  } catch (error) {
    await runner.release();
    throw error;
  }
  return { runner, kvCache, log };
}

/**
 * The profiling step: `maxNumBatchedTokens` prompt tokens over `min(maxNumSeqs, maxNumBatchedTokens)` requests (none
 * longer than `maxModelLen`), every request sampling, so the logits of a full batch are in the peak too.
 */
export function profilingBatch(options: Pick<PagedSetupOptions, 'blockSize' | 'maxModelLen' | 'maxNumSeqs' | 'maxNumBatchedTokens' | 'config'>): ModelRunnerRequest[] {
  const { blockSize, maxModelLen, maxNumBatchedTokens } = options;
  const numRequests = Math.max(Math.min(options.maxNumSeqs, maxNumBatchedTokens), Math.ceil(maxNumBatchedTokens / maxModelLen));
  const requests: ModelRunnerRequest[] = [];
  let nextBlock = 0;
  for (let index = 0; index < numRequests; index += 1) {
    const length = Math.floor(maxNumBatchedTokens / numRequests) + (index < maxNumBatchedTokens % numRequests ? 1 : 0);
    const blocks = Math.ceil(length / blockSize);
    requests.push({
      tokenIds: Array.from({ length }, (_, position) => (index + position) % options.config.vocabSize),
      numComputedTokens: 0,
      blockTable: Array.from({ length: blocks }, (_, block) => nextBlock + block),
    });
    nextBlock += blocks;
  }
  return requests;
}

import { checkpointNames, fixturePath, readReference } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineOptionsError, resolveEngineOptions } from '../core/engine-options';
import { LLM } from '../core/llm';
import { loadModelConfig } from '../model/model-config';
import type { GpuDeviceInfo, GpuProbe } from './gpu-device';
import { createPagedRunner, type PagedSetupOptions, profilingBatch } from './paged-setup';

// The engine on the GPU runner's graph (modelRunner 'paged-reference': PagedAttention's contract in standard
// operators on the CPU). The busy run with preemption runs on both runners in core/llm.test.ts.

const greedy = { temperature: 0, maxTokens: 24, ignoreEos: true };

describe.each(checkpointNames)('LLM on the paged reference runner, %s', (checkpoint) => {
  const reference = readReference(checkpoint);
  let llm: LLM;
  beforeAll(async () => {
    llm = await LLM.create(fixturePath(checkpoint), { modelRunner: 'paged-reference', kvCacheMemory: '16MiB', maxModelLen: 1024, intraOpNumThreads: 1 });
  });
  afterAll(() => llm.close());

  it('reproduces the reference greedy tokens and text of every prompt', async () => {
    const outputs = await llm.generate(reference.prompts.map((prompt) => prompt.ids), greedy);
    outputs.forEach((output, index) => {
      expect(output.outputs[0]!.tokenIds).toEqual(reference.prompts[index]!.greedy.ids);
      expect(output.outputs[0]!.text).toBe(reference.prompts[index]!.greedy.text_in_context);
    });
    expect(llm.core.startupLog.join('\n')).toMatch(/KV pools on cpu \(float32, .*\) keep their writes between runs/);
  });
});

describe('planning the KV cache from a profiling run (a fake nvidia-smi, the reference runner)', () => {
  const GiB = 2 ** 30;
  const MiB = 2 ** 20;
  const device: GpuDeviceInfo = { index: 0, name: 'Test GPU', totalBytes: GiB, usedBytes: 0, freeBytes: GiB, computeCapability: [9, 0] };
  const probe = (processUsed: number | undefined): GpuProbe => ({ devices: () => [device], processUsedBytes: () => processUsed });
  /** tiny-llama on the reference runner, a profiled KV cache unless `kvCache` is given; each test sets what it varies. */
  const setupOptions = async (overrides: Partial<PagedSetupOptions>): Promise<PagedSetupOptions> => ({
    modelDir: fixturePath('tiny-llama'),
    config: await loadModelConfig(fixturePath('tiny-llama')),
    device: 'cpu',
    dtype: 'float32',
    blockSize: 16,
    maxModelLen: 256,
    maxNumSeqs: 4,
    maxNumBatchedTokens: 64,
    gpuMemoryUtilization: 0.9,
    kvCache: undefined,
    loadFormat: 'safetensors',
    seed: 0,
    intraOpNumThreads: 1,
    ...overrides,
  });

  it("gives the KV cache the budget less what the process holds after profiling, less the profiling run's own pools", async () => {
    const options = await setupOptions({ gpuMemoryUtilization: 0.11, probe: () => probe(100 * MiB) });
    const profile = profilingBatch(options);
    expect(profile.map((request) => request.tokenIds.length)).toEqual([16, 16, 16, 16]);
    const setup = await createPagedRunner(options);
    try {
      const bytesPerBlock = 2 * 2 * 2 * 16 * 4 * 16; // layers × (k, v) × kv heads × head dim × float32 × tokens
      const profilePoolBytes = 4 * bytesPerBlock;
      expect(setup.kvCache.numBlocks).toBe(Math.floor((Math.floor(0.11 * GiB) - (100 * MiB - profilePoolBytes)) / bytesPerBlock));
      expect(setup.runner.numBlocks).toBe(setup.kvCache.numBlocks);
      expect(setup.log[0]).toMatch(/^GPU 0 \(Test GPU, sm 9\.0\): 1\.00 GiB × 0\.11 = 112\.64 MiB; weights .*profiled with 64 tokens over 4 requests/);
      expect(setup.log[1]).toMatch(/keep their writes between runs/);
    } finally {
      await setup.runner.release();
    }
  });

  it('refuses a max_model_len whose blocks do not fit the profiled budget, saying what to change', async () => {
    // 2 MiB of KV cache after 100 MiB of everything else: 256 blocks of 8 KiB, 4,096 tokens.
    const error = await createPagedRunner(
      await setupOptions({ maxModelLen: 8192, gpuMemoryUtilization: (102 * MiB) / GiB, probe: () => probe(100 * MiB + 4 * 8192) }),
    ).catch((caught: unknown) => caught);
    expect((error as Error).message).toMatch(/max_model_len 8192 needs 512 KV blocks for one request, but only 256 fit .*raise --gpu-memory-utilization, or lower --max-model-len to at most 4096/);
  });

  it('caps a given KV cache size at what one pool may hold, and says so', async () => {
    const config = await loadModelConfig(fixturePath('tiny-llama'));
    const kvCache = resolveEngineOptions({ modelRunner: 'paged-reference', kvCacheMemory: '4MiB', maxModelLen: 256 }, config).kvCache!;
    expect(kvCache.numBlocks).toBe(512);
    // A block holds 16 tokens × 2 KV heads × 16 dims × 4 bytes = 2 KiB of each of the 4 pools.
    const setup = await createPagedRunner(await setupOptions({ kvCache, maxPoolBytes: 256 * 2048 }));
    try {
      expect(setup.kvCache.numBlocks).toBe(256);
      expect(setup.runner.numBlocks).toBe(256);
      expect(setup.log[0]).toBe("the KV cache is capped at 256 blocks (asked for 512): one layer's key or value pool may hold at most 512.00 KiB");
    } finally {
      await setup.runner.release();
    }
  });

  it('refuses to start when profiling leaves no room for the KV cache, naming the weights and the activation peak', async () => {
    await expect(
      createPagedRunner(await setupOptions({ gpuMemoryUtilization: 0.5, probe: () => probe(900 * MiB) })),
    ).rejects.toThrow(/weights .* activation peak/);
  });
});

describe('GPU engine options', () => {
  const resolve = async (options: Parameters<typeof resolveEngineOptions>[0]) =>
    resolveEngineOptions(options, await loadModelConfig(fixturePath('tiny-llama')));
  const refusal = async (options: Parameters<typeof resolveEngineOptions>[0]): Promise<EngineOptionsError> => {
    const error = await resolve(options).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(EngineOptionsError);
    return error as EngineOptionsError;
  };

  it('refuses --device cuda where onnxruntime-node has no CUDA provider, saying how to install it', async () => {
    const error = await refusal({ device: 'cuda' });
    expect(error.param).toBe('device');
    expect(error.message).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });

  it('validates dtype, block size and parallelism for the paged runner', async () => {
    expect((await refusal({ dtype: 'float16' })).message).toMatch(/dtype on cpu must be auto or float32, got "float16"/);
    expect((await refusal({ modelRunner: 'paged-reference', blockSize: 24 })).param).toBe('block_size');
    expect((await refusal({ modelRunner: 'paged-reference', tensorParallelSize: 2 })).param).toBe('tensor_parallel_size');
    expect((await refusal({ modelRunner: 'paged-reference', device: 'webgpu' })).param).toBe('model_runner');
    expect((await refusal({ modelRunner: 'paged' as never })).param).toBe('model_runner');
    const resolved = await resolve({ modelRunner: 'paged-reference', kvCacheMemory: '8MiB' });
    expect(resolved).toMatchObject({ blockSize: 16, dtype: 'float32', modelRunner: 'paged-reference' });
    expect(resolved.kvCache!.bytesPerToken).toBe(512);
  });
});

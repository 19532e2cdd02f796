import { checkpointNames, fixturePath, readReference } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineOptionsError, resolveEngineOptions } from '../core/engine-options';
import { LLM } from '../core/llm';
import { loadModelConfig } from '../model-config';
import type { GpuDeviceInfo, GpuProbe } from './gpu-device';
import { createPagedRunner, profilingBatch } from './paged-setup';

// The engine on the GPU runner's graph (modelRunner 'paged-reference': PagedAttention's contract in standard
// operators on the CPU): scheduling, preemption and prefix caching through block tables, cumulative and past
// sequence lengths instead of the CPU runner's gathered slots.

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

describe('the paged reference runner under pressure: preemption, chunked prefill and prefix caching', () => {
  const reference = readReference('tiny-llama');
  let busy: LLM;
  beforeAll(async () => {
    // 40 blocks of 16 tokens, as the CPU runner's test: too few for 16 requests' outputs, so requests are preempted.
    busy = await LLM.create(fixturePath('tiny-llama'), {
      modelRunner: 'paged-reference',
      kvCacheMemory: 40 * 16 * 512,
      maxModelLen: 400,
      maxNumBatchedTokens: 64,
      maxNumSeqs: 16,
      intraOpNumThreads: 1,
    });
  });
  afterAll(() => busy.close());

  it('gives each of 16 concurrent requests its solo output', async () => {
    const prompts = Array.from({ length: 16 }, (_, index) => reference.prompts[index % 3]!.ids);
    const params = prompts.map((_, index) => (index % 2 === 0 ? greedy : { temperature: 0.9, topP: 0.9, seed: 1000 + index, maxTokens: 24, ignoreEos: true }));
    const together = await busy.generate(prompts, params);
    const stats = busy.makeStats();
    expect(stats.numPreemptionsTotal).toBeGreaterThan(0);
    expect(stats.prefixCacheHits).toBeGreaterThan(0);
    for (let index = 0; index < prompts.length; index += 1) {
      const [alone] = await busy.generate([prompts[index]!], params[index]);
      expect(together[index]!.outputs[0]!.tokenIds).toEqual(alone!.outputs[0]!.tokenIds);
      if (index % 2 === 0) expect(alone!.outputs[0]!.tokenIds).toEqual(reference.prompts[index % 3]!.greedy.ids);
    }
    expect(busy.makeStats().kvCacheUsage).toBe(0);
  });
});

describe('planning the KV cache from a profiling run (a fake nvidia-smi, the reference runner)', () => {
  const GiB = 2 ** 30;
  const MiB = 2 ** 20;
  const device: GpuDeviceInfo = { index: 0, name: 'Test GPU', totalBytes: GiB, usedBytes: 0, freeBytes: GiB, computeCapability: [9, 0] };
  const probe = (processUsed: number | undefined): GpuProbe => ({ devices: () => [device], processUsedBytes: () => processUsed });

  it("gives the KV cache the budget less what the process holds after profiling, less the profiling run's own pools", async () => {
    const config = await loadModelConfig(fixturePath('tiny-llama'));
    const options = {
      modelDir: fixturePath('tiny-llama'),
      config,
      device: 'cpu' as const,
      dtype: 'float32' as const,
      blockSize: 16,
      maxModelLen: 256,
      maxNumSeqs: 4,
      maxNumBatchedTokens: 64,
      gpuMemoryUtilization: 0.11,
      kvCache: undefined,
      loadFormat: 'safetensors' as const,
      seed: 0,
      intraOpNumThreads: 1,
      probe: () => probe(100 * MiB),
    };
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
    const config = await loadModelConfig(fixturePath('tiny-llama'));
    // 2 MiB of KV cache after 100 MiB of everything else: 256 blocks of 8 KiB, 4,096 tokens.
    const error = await createPagedRunner({
      modelDir: fixturePath('tiny-llama'),
      config,
      device: 'cpu',
      dtype: 'float32',
      blockSize: 16,
      maxModelLen: 8192,
      maxNumSeqs: 4,
      maxNumBatchedTokens: 64,
      gpuMemoryUtilization: (102 * MiB) / GiB,
      kvCache: undefined,
      loadFormat: 'safetensors',
      seed: 0,
      probe: () => probe(100 * MiB + 4 * 8192),
    }).catch((caught: unknown) => caught);
    expect((error as Error).message).toMatch(/max_model_len 8192 needs 512 KV blocks for one request, but only 256 fit .*raise --gpu-memory-utilization, or lower --max-model-len to at most 4096/);
  });

  it('caps a given KV cache size at what one pool may hold, and says so', async () => {
    const config = await loadModelConfig(fixturePath('tiny-llama'));
    const kvCache = resolveEngineOptions({ modelRunner: 'paged-reference', kvCacheMemory: '4MiB', maxModelLen: 256 }, config).kvCache;
    expect(kvCache!.numBlocks).toBe(512);
    const setup = await createPagedRunner({
      modelDir: fixturePath('tiny-llama'),
      config,
      device: 'cpu',
      dtype: 'float32',
      blockSize: 16,
      maxModelLen: 256,
      maxNumSeqs: 4,
      maxNumBatchedTokens: 64,
      gpuMemoryUtilization: 0.9,
      kvCache,
      loadFormat: 'safetensors',
      seed: 0,
      // A block holds 16 tokens × 2 KV heads × 16 dims × 4 bytes = 2 KiB of each of the 4 pools.
      maxPoolBytes: 256 * 2048,
    });
    try {
      expect(setup.kvCache.numBlocks).toBe(256);
      expect(setup.runner.numBlocks).toBe(256);
      expect(setup.log[0]).toBe("the KV cache is capped at 256 blocks (asked for 512): one layer's key or value pool may hold at most 512.00 KiB");
    } finally {
      await setup.runner.release();
    }
  });

  it('refuses to start when profiling leaves no room for the KV cache, naming the weights and the activation peak', async () => {
    const config = await loadModelConfig(fixturePath('tiny-llama'));
    await expect(
      createPagedRunner({
        modelDir: fixturePath('tiny-llama'),
        config,
        device: 'cpu',
        dtype: 'float32',
        blockSize: 16,
        maxModelLen: 256,
        maxNumSeqs: 4,
        maxNumBatchedTokens: 64,
        gpuMemoryUtilization: 0.5,
        kvCache: undefined,
        loadFormat: 'safetensors',
        seed: 0,
        probe: () => probe(900 * MiB),
      }),
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

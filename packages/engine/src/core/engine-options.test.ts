import { fixturePath } from '@pagoda/fixtures';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModelConfig } from '../model/model-config';
import type { ModelConfig } from '../model/model-config';
import { EngineOptionsError, resolveEngineOptions } from './engine-options';
import type { EngineOptions } from './engine-options';

describe('resolveEngineOptions: tensor and pipeline parallel sizes', () => {
  // tiny-llama: 2 layers, 4 attention heads, 2 KV heads, intermediate_size 176.
  let model: ModelConfig;
  beforeAll(async () => {
    model = await loadModelConfig(fixturePath('tiny-llama'));
  });

  function refusal(options: EngineOptions): EngineOptionsError {
    try {
      resolveEngineOptions({ kvCacheMemory: '16MiB', ...options }, model);
    } catch (error) {
      expect(error).toBeInstanceOf(EngineOptionsError);
      return error as EngineOptionsError;
    }
    throw new Error('expected an EngineOptionsError');
  }

  it('accepts the layouts the model splits into, defaulting to one rank', () => {
    expect(resolveEngineOptions({ kvCacheMemory: '16MiB' }, model)).toMatchObject({ tensorParallelSize: 1, pipelineParallelSize: 1 });
    expect(resolveEngineOptions({ kvCacheMemory: '16MiB', tensorParallelSize: 2, pipelineParallelSize: 2 }, model)).toMatchObject({
      tensorParallelSize: 2,
      pipelineParallelSize: 2,
    });
  });

  it('refuses a tensor_parallel_size that does not divide the attention heads, naming the parameter', () => {
    const error = refusal({ tensorParallelSize: 3 });
    expect(error.param).toBe('tensor_parallel_size');
    expect(error.message).toBe("tensor_parallel_size (3) must divide the model's attention heads (num_attention_heads = 4)");
  });

  it('refuses more pipeline stages than layers, naming the parameter', () => {
    const error = refusal({ pipelineParallelSize: 3 });
    expect(error.param).toBe('pipeline_parallel_size');
    expect(error.message).toBe("pipeline_parallel_size (3) must not exceed the model's layers (num_hidden_layers = 2)");
  });

  it('refuses sizes that are not positive integers', () => {
    expect(refusal({ tensorParallelSize: 0 }).param).toBe('tensor_parallel_size');
    expect(refusal({ pipelineParallelSize: 1.5 }).param).toBe('pipeline_parallel_size');
  });

  it('plans the KV cache over all ranks: the same blocks as one rank, fewer when tensor parallelism replicates KV heads', () => {
    const blocks = (options: EngineOptions): number =>
      resolveEngineOptions({ kvCacheMemory: '16MiB', ...options }, model).kvCache!.numBlocks;
    const single = blocks({});
    expect(blocks({ tensorParallelSize: 2, pipelineParallelSize: 2 })).toBe(single);
    // tp 4 over 2 KV heads holds each KV head twice.
    expect(blocks({ tensorParallelSize: 4 })).toBe(Math.floor(single / 2));
  });
});

describe('resolveEngineOptions: quantization', () => {
  it('takes int8 and int4 with an accuracy_level in [0, 4], and refuses anything else naming the parameter', async () => {
    const model = await loadModelConfig(fixturePath('tiny-llama'));
    const resolved = resolveEngineOptions({ kvCacheMemory: '16MiB', quantization: 'int4' }, model);
    expect(resolved).toMatchObject({ quantization: 'int4', accuracyLevel: 4 });
    expect(resolveEngineOptions({ kvCacheMemory: '16MiB' }, model).quantization).toBeUndefined();
    const bad = (options: EngineOptions): EngineOptionsError => {
      try {
        resolveEngineOptions({ kvCacheMemory: '16MiB', ...options }, model);
      } catch (error) {
        return error as EngineOptionsError;
      }
      throw new Error('expected an EngineOptionsError');
    };
    expect(bad({ quantization: 'int3' as never }).param).toBe('quantization');
    expect(bad({ quantization: 'int8', accuracyLevel: 5 as never }).param).toBe('accuracy_level');
  });

  it("refuses a tensor-parallel layout that would cut a quantized row-parallel weight inside a block, saying which and why", async () => {
    // tiny-qwen2: 4 heads × head_dim 8 = 32 input columns of o_proj, one block; tp 2 would give each rank half of it.
    const qwen2 = await loadModelConfig(fixturePath('tiny-qwen2'));
    expect(() => resolveEngineOptions({ kvCacheMemory: '16MiB', tensorParallelSize: 2 }, qwen2)).not.toThrow();
    let error: EngineOptionsError | undefined;
    try {
      resolveEngineOptions({ kvCacheMemory: '16MiB', tensorParallelSize: 2, quantization: 'int8' }, qwen2);
    } catch (caught) {
      error = caught as EngineOptionsError;
    }
    expect(error).toBeInstanceOf(EngineOptionsError);
    expect(error!.param).toBe('tensor_parallel_size');
    expect(error!.message).toContain('model.layers.0.self_attn.o_proj.weight, stored as q8_0, at [0, 16)');
    expect(error!.message).toContain('32-element quantization blocks');
    // tiny-llama's down_proj rows (176) are not whole blocks, so it stays float32 and its shards may fall anywhere.
    const llama = await loadModelConfig(fixturePath('tiny-llama'));
    expect(resolveEngineOptions({ kvCacheMemory: '16MiB', tensorParallelSize: 2, quantization: 'int4' }, llama).tensorParallelSize).toBe(2);
    expect(() => resolveEngineOptions({ kvCacheMemory: '16MiB', tensorParallelSize: 4, quantization: 'int4' }, llama)).toThrow(/o_proj\.weight, stored as q4_0/);
  });
});

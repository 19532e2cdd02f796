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

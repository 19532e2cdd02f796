import { describe, expect, it } from 'vitest';
import { kvCacheBytesPerBlock, kvCacheBytesPerToken } from './index';

// Llama-3-8B: 32 layers, 8 KV heads, head_dim 128, bf16.
const llama3_8b = { numLayers: 32, numKvHeads: 8, headDim: 128, dtypeBytes: 2 };

describe('KV cache size', () => {
  it('is 128 KiB per token for Llama-3-8B in bf16', () => {
    expect(kvCacheBytesPerToken(llama3_8b)).toBe(128 * 1024);
  });

  it('is 2 MiB per 16-token block for Llama-3-8B in bf16', () => {
    expect(kvCacheBytesPerBlock(llama3_8b, 16)).toBe(2 * 1024 * 1024);
  });

  it('names the field that is not a positive integer', () => {
    expect(() => kvCacheBytesPerToken({ ...llama3_8b, numKvHeads: 0 })).toThrow('numKvHeads must be a positive integer, got 0');
    expect(() => kvCacheBytesPerBlock(llama3_8b, 1.5)).toThrow('block_size must be a positive integer, got 1.5');
  });
});

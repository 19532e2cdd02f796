import { describe, expect, it } from 'vitest';
import { KvCacheCapacityError, parseMemorySize, planKvCache } from './index';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
// Llama-3-8B: 32 layers, 8 KV heads, head_dim 128, bf16 → 2 × 32 × 8 × 128 × 2 = 131,072 bytes (128 KiB) per token.
const llama3_8b = { numLayers: 32, numKvHeads: 8, headDim: 128, dtypeBytes: 2, blockSize: 16, maxModelLen: 8192 };

describe('planKvCache', () => {
  it('gives the KV cache what the weights and activation peak leave of the whole budget (Llama-3-8B, bf16)', () => {
    // 40 GiB budget − 15 GiB weights − 1 GiB activations = 24 GiB = 24 × 1024 / 2 blocks of 2 MiB = 12,288 blocks
    const plan = planKvCache({ ...llama3_8b, memoryBytes: 40 * GiB, weightsBytes: 15 * GiB, activationPeakBytes: GiB });
    expect(plan.bytesPerToken).toBe(128 * 1024);
    expect(plan.bytesPerBlock).toBe(2 * MiB);
    expect(plan.numBlocks).toBe(12_288);
    expect(plan.maxTokens).toBe(196_608);
    expect(plan.maxConcurrency).toBe(24); // 196,608 / 8,192
  });

  it('takes gpu_memory_utilization × device memory as the budget', () => {
    // 0.9 × 80 GiB = 72 GiB; − 16 GiB weights − 2 GiB activations = 54 GiB → 27,648 blocks
    const plan = planKvCache({
      ...llama3_8b,
      deviceMemoryBytes: 80 * GiB,
      gpuMemoryUtilization: 0.9,
      weightsBytes: 16 * GiB,
      activationPeakBytes: 2 * GiB,
    });
    expect(plan.numBlocks).toBe(27_648);
  });

  it('takes a KV cache size directly, rounding down to whole blocks', () => {
    const plan = planKvCache({ ...llama3_8b, kvCacheMemoryBytes: parseMemorySize('4GiB') + MiB });
    expect(plan.numBlocks).toBe(2048);
    expect(plan.kvCacheBytes).toBe(4 * GiB);
  });

  it('refuses a budget where one max_model_len request does not fit, and says what to change', () => {
    // 0.9 × 24 GiB − 15 GiB − 1 GiB = 5.6 GiB = 2,867 blocks of 2 MiB (45,872 tokens); 131,072 tokens need 8,192 blocks
    const attempt = () =>
      planKvCache({ ...llama3_8b, maxModelLen: 131_072, deviceMemoryBytes: 24 * GiB, gpuMemoryUtilization: 0.9, weightsBytes: 15 * GiB, activationPeakBytes: GiB });
    expect(attempt).toThrow(KvCacheCapacityError);
    expect(attempt).toThrow(/max_model_len 131072 needs 8192 KV blocks \(16\.00 GiB\) for one request, but only 2867 blocks/);
    expect(attempt).toThrow(/raise gpu_memory_utilization, or lower max_model_len to at most 45872/);
  });

  it('says that only a larger budget helps when not one block fits', () => {
    const attempt = () => planKvCache({ ...llama3_8b, kvCacheMemoryBytes: MiB });
    expect(attempt).toThrow(/not one block of 2\.00 MiB fits/);
    expect(attempt).not.toThrow(/at most 0/);
  });

  it('refuses a budget the weights alone exhaust', () => {
    expect(() => planKvCache({ ...llama3_8b, memoryBytes: 8 * GiB, weightsBytes: 15 * GiB, activationPeakBytes: 0 })).toThrow(
      /no memory is left for the KV cache/,
    );
  });

  it('validates gpu_memory_utilization', () => {
    expect(() =>
      planKvCache({ ...llama3_8b, deviceMemoryBytes: GiB, gpuMemoryUtilization: 1.5, weightsBytes: 0, activationPeakBytes: 0 }),
    ).toThrow('gpu_memory_utilization must be in (0, 1], got 1.5');
  });
});

describe('parseMemorySize', () => {
  it('reads bytes and binary and decimal units', () => {
    expect(parseMemorySize('1073741824')).toBe(GiB);
    expect(parseMemorySize('4GiB')).toBe(4 * GiB);
    expect(parseMemorySize('512 MiB')).toBe(512 * MiB);
    expect(parseMemorySize('1.5GB')).toBe(1.5e9);
  });

  it('names what it cannot read', () => {
    expect(() => parseMemorySize('lots')).toThrow('not a memory size: "lots"');
  });
});

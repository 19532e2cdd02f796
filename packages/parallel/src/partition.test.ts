import { describe, expect, it } from 'vitest';
import { partitionLayers, PartitionError, shardRange } from './index';

describe('partitionLayers', () => {
  it('covers every layer exactly once, in order, with stage sizes differing by at most one', () => {
    for (let numLayers = 1; numLayers <= 40; numLayers += 1) {
      for (let stages = 1; stages <= Math.min(numLayers, 8); stages += 1) {
        const ranges = partitionLayers(numLayers, stages);
        expect(ranges).toHaveLength(stages);
        expect(ranges[0]!.start).toBe(0);
        expect(ranges.at(-1)!.end).toBe(numLayers);
        ranges.slice(1).forEach((range, index) => expect(range.start).toBe(ranges[index]!.end));
        const sizes = ranges.map((range) => range.end - range.start);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }
    }
  });

  it('gives the extra layers to the stages before the last (SmolLM2-135M: 30 layers on 4 stages)', () => {
    expect(partitionLayers(30, 4)).toEqual([
      { start: 0, end: 7 },
      { start: 7, end: 15 },
      { start: 15, end: 23 },
      { start: 23, end: 30 },
    ]);
  });

  it('refuses more stages than layers', () => {
    expect(() => partitionLayers(2, 3)).toThrow(PartitionError);
    expect(() => partitionLayers(2, 3)).toThrow("pipeline_parallel_size (3) must not exceed the model's 2 layers");
  });
});

describe('shardRange', () => {
  it('gives each rank an equal contiguous slice', () => {
    expect([0, 1, 2].map((rank) => shardRange('num_attention_heads', 9, 3, rank))).toEqual([
      { start: 0, end: 3 },
      { start: 3, end: 6 },
      { start: 6, end: 9 },
    ]);
  });

  it('names the dimension that does not divide', () => {
    expect(() => shardRange('num_key_value_heads', 3, 2, 0)).toThrow(
      'num_key_value_heads (3) must be divisible by tensor_parallel_size (2)',
    );
  });
});

import { describe, expect, it } from 'vitest';
import { parallelGroups, ParallelError, PartitionError, partitionPlan, validateParallelConfig } from './index';
import type { ModelShape } from './index';

const smolLm2: ModelShape = {
  numLayers: 30,
  numHeads: 9,
  numKvHeads: 3,
  headDim: 64,
  hiddenSize: 576,
  intermediateSize: 1536,
  vocabSize: 49_152,
};

const llama3Like: ModelShape = {
  numLayers: 32,
  numHeads: 32,
  numKvHeads: 8,
  headDim: 128,
  hiddenSize: 4096,
  intermediateSize: 14_336,
  vocabSize: 128_256,
};

function thrown(action: () => unknown): PartitionError {
  try {
    action();
  } catch (error) {
    expect(PartitionError.isInstance(error)).toBe(true);
    expect(ParallelError.isInstance(error)).toBe(true);
    return error as PartitionError;
  }
  throw new Error('expected a PartitionError');
}

describe('validateParallelConfig', () => {
  it('accepts layouts that divide the model', () => {
    expect(() => validateParallelConfig(smolLm2, { tensorParallelSize: 3, pipelineParallelSize: 30 })).not.toThrow();
    expect(() => validateParallelConfig(llama3Like, { tensorParallelSize: 16, pipelineParallelSize: 2 })).not.toThrow();
  });

  it('names tensor_parallel_size and the heads when the attention heads do not divide', () => {
    const error = thrown(() => validateParallelConfig(smolLm2, { tensorParallelSize: 2, pipelineParallelSize: 1 }));
    expect(error.message).toBe(
      "tensor_parallel_size (2) must divide the model's attention heads (num_attention_heads = 9)",
    );
    expect(error).toMatchObject({ code: 'invalid_parallel_config', param: 'tensor_parallel_size', value: 2 });
  });

  it('names the intermediate size when the MLP does not divide', () => {
    const shape = { ...smolLm2, intermediateSize: 1540 };
    const error = thrown(() => validateParallelConfig(shape, { tensorParallelSize: 3, pipelineParallelSize: 1 }));
    expect(error.message).toBe(
      "tensor_parallel_size (3) must divide the model's MLP width (intermediate_size = 1540)",
    );
    expect(error.param).toBe('tensor_parallel_size');
  });

  it('refuses a tensor-parallel size that neither divides nor is a multiple of the KV heads', () => {
    const shape = { ...llama3Like, numHeads: 48, numKvHeads: 8 };
    expect(thrown(() => validateParallelConfig(shape, { tensorParallelSize: 12, pipelineParallelSize: 1 })).message).toBe(
      "tensor_parallel_size (12) exceeds the model's KV heads (num_key_value_heads = 8), so they are replicated, " +
        'and must then be a multiple of them',
    );
    const kvOnly = { ...llama3Like, numHeads: 24, numKvHeads: 6 };
    expect(thrown(() => validateParallelConfig(kvOnly, { tensorParallelSize: 4, pipelineParallelSize: 1 })).message).toBe(
      "tensor_parallel_size (4) must divide the model's KV heads (num_key_value_heads = 6)",
    );
  });

  it('names pipeline_parallel_size when there are fewer layers than stages', () => {
    const error = thrown(() => validateParallelConfig(smolLm2, { tensorParallelSize: 1, pipelineParallelSize: 31 }));
    expect(error.message).toBe("pipeline_parallel_size (31) must not exceed the model's layers (num_hidden_layers = 30)");
    expect(error).toMatchObject({ param: 'pipeline_parallel_size', value: 31 });
  });

  it('refuses sizes that are not positive integers, naming them', () => {
    expect(thrown(() => validateParallelConfig(smolLm2, { tensorParallelSize: 0, pipelineParallelSize: 1 })).message).toBe(
      'tensor_parallel_size must be a positive integer, got 0',
    );
    expect(thrown(() => validateParallelConfig(smolLm2, { tensorParallelSize: 1, pipelineParallelSize: 1.5 })).param).toBe(
      'pipeline_parallel_size',
    );
  });
});

describe('partitionPlan', () => {
  it('splits SmolLM2-135M over tp 3: three query heads, one KV head, 512 MLP rows and a third of the vocabulary each', () => {
    const plan = partitionPlan(smolLm2, { tensorParallelSize: 3, pipelineParallelSize: 1 });
    expect(plan).toMatchObject({ worldSize: 3, tensorParallelSize: 3, pipelineParallelSize: 1, vocabularyShardSize: 16_384 });
    expect(plan.ranks[1]).toEqual({
      rank: 1,
      tensorParallelRank: 1,
      pipelineStage: 0,
      layers: { start: 0, end: 30 },
      embedsTokens: true,
      producesLogits: true,
      queryHeads: { start: 3, end: 6 },
      kvHeads: { start: 1, end: 2 },
      kvHeadReplicas: 1,
      qProjRows: { start: 192, end: 384 },
      kvProjRows: { start: 64, end: 128 },
      oProjColumns: { start: 192, end: 384 },
      mlpRows: { start: 512, end: 1024 },
      downProjColumns: { start: 512, end: 1024 },
      vocabulary: { start: 16_384, end: 32_768 },
    });
  });

  it('numbers ranks stage-major and gives each stage its layers (SmolLM2-135M, tp 3 × pp 2)', () => {
    const plan = partitionPlan(smolLm2, { tensorParallelSize: 3, pipelineParallelSize: 2 });
    expect(plan.ranks.map((rank) => [rank.rank, rank.pipelineStage, rank.tensorParallelRank])).toEqual([
      [0, 0, 0],
      [1, 0, 1],
      [2, 0, 2],
      [3, 1, 0],
      [4, 1, 1],
      [5, 1, 2],
    ]);
    expect(plan.ranks.map((rank) => rank.layers)).toEqual([
      ...Array(3).fill({ start: 0, end: 15 }),
      ...Array(3).fill({ start: 15, end: 30 }),
    ]);
    expect(plan.ranks.map((rank) => [rank.embedsTokens, rank.producesLogits])).toEqual([
      ...Array(3).fill([true, false]),
      ...Array(3).fill([false, true]),
    ]);
  });

  it('replicates KV heads when tp exceeds them (Llama-3-8B-like, tp 16: each KV head on two ranks)', () => {
    const plan = partitionPlan(llama3Like, { tensorParallelSize: 16, pipelineParallelSize: 1 });
    expect(plan.ranks.map((rank) => rank.kvHeads.start)).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]);
    for (const rank of plan.ranks) {
      expect(rank.kvHeadReplicas).toBe(2);
      expect(rank.kvHeads.end - rank.kvHeads.start).toBe(1);
      expect(rank.queryHeads.end - rank.queryHeads.start).toBe(2);
      // Each rank's query heads belong to the KV head it holds (4 query heads per KV head).
      expect(Math.floor(rank.queryHeads.start / 4)).toBe(rank.kvHeads.start);
      expect(Math.floor((rank.queryHeads.end - 1) / 4)).toBe(rank.kvHeads.start);
      expect(rank.kvProjRows).toEqual({ start: rank.kvHeads.start * 128, end: rank.kvHeads.end * 128 });
    }
  });

  it('covers every weight row and column exactly once over a stage (Llama-3-8B-like, tp 8)', () => {
    const plan = partitionPlan(llama3Like, { tensorParallelSize: 8, pipelineParallelSize: 1 });
    const covered = (ranges: { start: number; end: number }[], size: number): void => {
      expect(ranges[0]!.start).toBe(0);
      expect(ranges.at(-1)!.end).toBe(size);
      ranges.slice(1).forEach((range, index) => expect(range.start).toBe(ranges[index]!.end));
    };
    covered(plan.ranks.map((rank) => rank.qProjRows), 32 * 128);
    covered(plan.ranks.map((rank) => rank.kvProjRows), 8 * 128);
    covered(plan.ranks.map((rank) => rank.oProjColumns), 32 * 128);
    covered(plan.ranks.map((rank) => rank.mlpRows), 14_336);
    covered(plan.ranks.map((rank) => rank.downProjColumns), 14_336);
    covered(plan.ranks.map((rank) => rank.vocabulary), 128_256);
  });

  it('pads the all-gather when the vocabulary does not divide: the last slice is shorter', () => {
    const plan = partitionPlan({ ...smolLm2, vocabSize: 49_153 }, { tensorParallelSize: 3, pipelineParallelSize: 1 });
    expect(plan.vocabularyShardSize).toBe(16_385);
    expect(plan.ranks.map((rank) => rank.vocabulary)).toEqual([
      { start: 0, end: 16_385 },
      { start: 16_385, end: 32_770 },
      { start: 32_770, end: 49_153 },
    ]);
  });

  it('validates first', () => {
    expect(() => partitionPlan(smolLm2, { tensorParallelSize: 2, pipelineParallelSize: 1 })).toThrow(PartitionError);
  });
});

describe('parallelGroups', () => {
  it('groups a stage for tensor parallelism and a tensor-parallel rank across stages for the pipeline', () => {
    expect(parallelGroups({ tensorParallelSize: 2, pipelineParallelSize: 3 })).toEqual({
      tensorParallel: [
        [0, 1],
        [2, 3],
        [4, 5],
      ],
      pipelineParallel: [
        [0, 2, 4],
        [1, 3, 5],
      ],
    });
  });
});

import { PartitionError } from './errors';

/** A half-open range `[start, end)`. */
export interface Range {
  start: number;
  end: number;
}

/**
 * Splits `numLayers` decoder layers into `pipelineParallelSize` contiguous stages. Layers that do not divide evenly
 * go one each to the stages just before the last, because the last stage also runs the final norm and lm_head:
 *
 * ```
 * 30 layers, 4 stages:  [0,7) [7,15) [15,23) [23,30)   (7, 8, 8, 7)
 * ```
 */
export function partitionLayers(numLayers: number, pipelineParallelSize: number): Range[] {
  requirePositiveInteger('num_hidden_layers', numLayers);
  requirePositiveInteger('pipeline_parallel_size', pipelineParallelSize);
  if (pipelineParallelSize > numLayers) {
    throw new PartitionError(
      `pipeline_parallel_size (${pipelineParallelSize}) must not exceed the model's ${numLayers} layers`,
      { param: 'pipeline_parallel_size', value: pipelineParallelSize },
    );
  }
  const sizes = new Array<number>(pipelineParallelSize).fill(Math.floor(numLayers / pipelineParallelSize));
  const remainder = numLayers % pipelineParallelSize;
  for (let extra = 0; extra < remainder; extra += 1) {
    sizes[pipelineParallelSize - 2 - extra] = sizes[pipelineParallelSize - 2 - extra]! + 1;
  }
  const ranges: Range[] = [];
  let start = 0;
  for (const size of sizes) {
    ranges.push({ start, end: start + size });
    start += size;
  }
  return ranges;
}

/**
 * The slice of a dimension of `size` that tensor-parallel `rank` of `tensorParallelSize` owns, e.g. its attention
 * heads. The dimension must divide evenly: Megatron's layout gives every rank the same shard.
 */
export function shardRange(what: string, size: number, tensorParallelSize: number, rank: number): Range {
  requirePositiveInteger(what, size);
  requirePositiveInteger('tensor_parallel_size', tensorParallelSize);
  if (!Number.isInteger(rank) || rank < 0 || rank >= tensorParallelSize) {
    throw new PartitionError(`rank must be an integer in [0, ${tensorParallelSize}), got ${rank}`, {
      param: 'rank',
      value: rank,
    });
  }
  if (size % tensorParallelSize !== 0) {
    throw new PartitionError(
      `${what} (${size}) must be divisible by tensor_parallel_size (${tensorParallelSize})`,
      { param: 'tensor_parallel_size', value: tensorParallelSize },
    );
  }
  const shard = size / tensorParallelSize;
  return { start: rank * shard, end: (rank + 1) * shard };
}

export function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new PartitionError(`${name} must be a positive integer, got ${value}`, { param: name, value });
  }
}

export { partitionLayers, PartitionError, shardRange } from './partition';
export type { Range } from './partition';

export type { CollectiveArray, Communicator } from './communicator';
export { CommunicatorError, ExecutorError, ParallelError, PartitionError } from './errors';
export type { CommunicatorErrorCode, ExecutorErrorCode } from './errors';
export { createSingleRankExecutor } from './executor';
export type { Executor, RankContext, RankRunner, RankRunnerFactory } from './executor';
export { partitionLayers, shardRange } from './partition';
export type { Range } from './partition';
export { parallelGroups, partitionPlan, validateParallelConfig } from './partition-plan';
export type { ModelShape, ParallelConfig, PartitionPlan, RankPartition } from './partition-plan';
export {
  abortSharedMemory,
  createSharedMemoryCommunicator,
  createSharedMemoryState,
} from './shared-memory-communicator';
export type { SharedMemoryCommunicatorOptions, SharedMemoryState } from './shared-memory-communicator';
export { createWorkerExecutor, serveExecutorWorker } from './worker-executor';
export type { WorkerExecutorOptions } from './worker-executor';
export { createZeroMqCommunicator } from './zeromq-communicator';
export type { ZeroMqCommunicatorOptions } from './zeromq-communicator';

export {
  checkStartupFreeMemory,
  defaultGpuBlockSize,
  GpuMemoryError,
  GpuProbeError,
  nvidiaSmiProbe,
  pagedBlockSizeProblem,
  parseNvidiaSmiDevices,
  parseNvidiaSmiProcessMemory,
  planGpuKvBlocks,
  selectDevice,
} from './gpu-device';
export type { GpuDeviceInfo, GpuKvPlan, GpuKvPlanInput, GpuProbe } from './gpu-device';
export { layoutPagedBatch, metadataEntriesFor } from './paged-batch';
export type { PagedBatch, PagedBatchContext } from './paged-batch';
export { buildPagedGraph } from './paged-graph';
export type { PagedDtype, PagedGraph, PagedGraphOptions } from './paged-graph';
export { KvPoolPersistenceError, PagedModelRunner } from './paged-model-runner';
export type { PagedDevice, PagedModelRunnerOptions, PoolSelfCheck } from './paged-model-runner';
export { createPagedRunner, profilingBatch } from './paged-setup';
export type { PagedSetup, PagedSetupOptions } from './paged-setup';

export { checkContextLength, RequestRejectedError, SchedulerError } from './errors';
export { Request } from './request';
export type { RequestInit } from './request';
export { comparePriority, FcfsQueue, PriorityQueue } from './request-queue';
export type { RequestQueue } from './request-queue';
export { finishReasonOf, isFinished, RequestStatus } from './request-status';
export type { FinishReason } from './request-status';
export { Scheduler } from './scheduler';
export type { Clock, SchedulerConfig, SchedulerStats } from './scheduler';
export type {
  CachedRequestData,
  ModelRunnerOutput,
  NewRequestData,
  RequestUpdate,
  SchedulerOutput,
} from './scheduler-output';

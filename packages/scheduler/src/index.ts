export { finishReasonOf, isFinished, RequestStatus } from './request-status';
export type { FinishReason } from './request-status';

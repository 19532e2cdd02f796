/**
 * A request's lifecycle. The values are ordered so that "finished" is a comparison: every status after `Preempted`
 * is a finished one (as in vLLM v1).
 */
export enum RequestStatus {
  Waiting = 0,
  Running = 1,
  Preempted = 2,
  FinishedStopped = 3,
  FinishedLengthCapped = 4,
  FinishedAborted = 5,
  FinishedIgnored = 6,
}

/** The finish reasons of the OpenAI API. */
export type FinishReason = 'stop' | 'length' | 'abort';

/** The one map from finished statuses to the API's finish reasons. */
const finishReasons: Readonly<Partial<Record<RequestStatus, FinishReason>>> = {
  [RequestStatus.FinishedStopped]: 'stop',
  [RequestStatus.FinishedLengthCapped]: 'length',
  [RequestStatus.FinishedAborted]: 'abort',
  // An ignored request (its prompt can never fit) ends as vLLM reports it: cut for length.
  [RequestStatus.FinishedIgnored]: 'length',
};

export function isFinished(status: RequestStatus): boolean {
  return status > RequestStatus.Preempted;
}

/** The API finish reason of a finished status; `undefined` while the request is not finished. */
export function finishReasonOf(status: RequestStatus): FinishReason | undefined {
  return finishReasons[status];
}

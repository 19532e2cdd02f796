/**
 * A request's lifecycle. The values are ordered so that "finished" is a comparison: every status after `Preempted`
 * is a finished one (as in vLLM v1).
 *
 * `WaitingForStructuredOutput` (vLLM's `WAITING_FOR_FSM`): the request's grammar is still compiling. It is never
 * scheduled until the engine calls `Scheduler.markStructuredOutputReady`; then it waits as any other.
 */
export enum RequestStatus {
  Waiting = 0,
  WaitingForStructuredOutput = 1,
  Running = 2,
  Preempted = 3,
  FinishedStopped = 4,
  FinishedLengthCapped = 5,
  FinishedAborted = 6,
  FinishedIgnored = 7,
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

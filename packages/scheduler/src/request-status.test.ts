import { describe, expect, it } from 'vitest';
import { finishReasonOf, isFinished, RequestStatus } from './index';

const allStatuses = Object.values(RequestStatus).filter((value): value is RequestStatus => typeof value === 'number');

describe('RequestStatus', () => {
  it('orders every finished status after every unfinished one', () => {
    const unfinished = [RequestStatus.Waiting, RequestStatus.WaitingForStructuredOutput, RequestStatus.Running, RequestStatus.Preempted];
    for (const status of allStatuses) {
      expect(isFinished(status)).toBe(!unfinished.includes(status));
    }
  });

  it('maps each finished status to an API finish reason and unfinished ones to none', () => {
    expect(finishReasonOf(RequestStatus.FinishedStopped)).toBe('stop');
    expect(finishReasonOf(RequestStatus.FinishedLengthCapped)).toBe('length');
    expect(finishReasonOf(RequestStatus.FinishedAborted)).toBe('abort');
    for (const status of allStatuses) {
      expect(finishReasonOf(status) !== undefined).toBe(isFinished(status));
    }
  });
});

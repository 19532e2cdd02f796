import { describe, expect, it } from 'vitest';
import { RequestStatus, type RequestInit } from './index';
import { FakeModelRunner, makeScheduler } from './test-runner';

const request = (requestId: string, extra: Partial<RequestInit> = {}): RequestInit => ({
  requestId,
  promptTokenIds: [1, 2, 3, 4],
  maxTokens: 3,
  ...extra,
});

describe('waiting for a grammar (vLLM WAITING_FOR_FSM)', () => {
  it('never schedules a request whose grammar is compiling, while the others run', () => {
    const scheduler = makeScheduler();
    const runner = new FakeModelRunner(4, () => 9);
    scheduler.addRequest(request('constrained', { waitForStructuredOutput: true }));
    scheduler.addRequest(request('free'));
    expect(scheduler.getRequest('constrained')!.status).toBe(RequestStatus.WaitingForStructuredOutput);
    for (let step = 0; step < 3; step += 1) {
      const output = scheduler.schedule();
      expect(Object.keys(output.numScheduledTokens)).toEqual(['free']);
      scheduler.updateFromOutput(output, runner.execute(output));
    }
    expect(scheduler.getRequest('free')).toBeUndefined(); // finished: three tokens
    expect(scheduler.makeStats()).toMatchObject({ numWaitingRequests: 1, numRunningRequests: 0 });
    expect(scheduler.hasUnfinishedRequests()).toBe(true);
    expect(scheduler.schedule().totalNumScheduledTokens).toBe(0);
  });

  it('schedules it once the engine marks its grammar ready, and only once', () => {
    const scheduler = makeScheduler();
    scheduler.addRequest(request('constrained', { waitForStructuredOutput: true }));
    expect(scheduler.numWaitingForStructuredOutput).toBe(1);
    expect(scheduler.markStructuredOutputReady('constrained')).toBe(true);
    expect(scheduler.markStructuredOutputReady('constrained')).toBe(false);
    expect(scheduler.markStructuredOutputReady('unknown')).toBe(false);
    expect(scheduler.getRequest('constrained')!.status).toBe(RequestStatus.Waiting);
    expect(scheduler.numWaitingForStructuredOutput).toBe(0);
    const output = scheduler.schedule();
    expect(output.numScheduledTokens).toEqual({ constrained: 4 });
  });

  it('lets an abort take a request that is still waiting for its grammar', () => {
    const scheduler = makeScheduler();
    scheduler.addRequest(request('constrained', { waitForStructuredOutput: true }));
    scheduler.finishRequests('constrained', RequestStatus.FinishedAborted);
    expect(scheduler.hasUnfinishedRequests()).toBe(false);
    expect(scheduler.makeStats().numWaitingRequests).toBe(0);
    expect(scheduler.markStructuredOutputReady('constrained')).toBe(false);
    expect(scheduler.schedule().finishedRequestIds).toEqual(['constrained']);
  });
});

import { describe, expect, it } from 'vitest';
import { RequestRejectedError, RequestStatus, SchedulerError, type RequestInit, type SchedulerOutput } from './index';
import { FakeModelRunner, makeScheduler } from './test-runner';

const range = (length: number, start = 0) => Array.from({ length }, (_, index) => start + index);
const request = (requestId: string, promptLength: number, extra: Partial<RequestInit> = {}): RequestInit => ({
  requestId,
  promptTokenIds: range(promptLength, requestId.charCodeAt(0) * 1000),
  maxTokens: 100,
  ...extra,
});
const scheduledIds = (output: SchedulerOutput) => Object.keys(output.numScheduledTokens);

describe('Scheduler budgets', () => {
  it('schedules at most max_num_batched_tokens per step and chunks a long prompt across steps', () => {
    const scheduler = makeScheduler({ maxNumBatchedTokens: 16 });
    const runner = new FakeModelRunner(4, () => 1);
    scheduler.addRequest(request('a', 40));
    const totals: number[] = [];
    for (let step = 0; step < 3; step += 1) {
      const output = scheduler.schedule();
      totals.push(output.totalNumScheduledTokens);
      scheduler.updateFromOutput(output, runner.execute(output));
    }
    expect(totals).toEqual([16, 16, 8]);
    expect(scheduler.getRequest('a')!.outputTokenIds).toEqual([1]); // sampled only once the prompt was complete
  });

  it('runs at most max_num_seqs requests at once', () => {
    const scheduler = makeScheduler({ maxNumSeqs: 2 });
    for (const id of ['a', 'b', 'c']) scheduler.addRequest(request(id, 4));
    const output = scheduler.schedule();
    expect(scheduledIds(output)).toEqual(['a', 'b']);
    expect(scheduler.makeStats()).toMatchObject({ numRunningRequests: 2, numWaitingRequests: 1 });
  });

  it('interleaves a chunked prefill with other requests’ decode tokens, running requests first', () => {
    const scheduler = makeScheduler({ maxNumBatchedTokens: 10 });
    const runner = new FakeModelRunner(4, () => 7);
    scheduler.addRequest(request('a', 3));
    let output = scheduler.schedule();
    scheduler.updateFromOutput(output, runner.execute(output));
    scheduler.addRequest(request('b', 30));
    output = scheduler.schedule();
    expect(output.numScheduledTokens).toEqual({ a: 1, b: 9 });
    scheduler.updateFromOutput(output, runner.execute(output));
    output = scheduler.schedule();
    expect(output.numScheduledTokens).toEqual({ a: 1, b: 9 });
  });

  it('caps one request’s share of a step at long_prefill_token_threshold', () => {
    const scheduler = makeScheduler({ maxNumBatchedTokens: 64, longPrefillTokenThreshold: 8 });
    scheduler.addRequest(request('a', 30));
    scheduler.addRequest(request('b', 30));
    expect(scheduler.schedule().numScheduledTokens).toEqual({ a: 8, b: 8 });
  });

  it('with chunked prefill off, a prompt waits for a step with room for all of it', () => {
    const scheduler = makeScheduler({ maxNumBatchedTokens: 256, enableChunkedPrefill: false, numBlocks: 128 });
    const runner = new FakeModelRunner(4, () => 7);
    scheduler.addRequest(request('a', 200, { maxTokens: 10 }));
    scheduler.addRequest(request('b', 100, { maxTokens: 10 }));
    const output = scheduler.schedule();
    expect(output.numScheduledTokens).toEqual({ a: 200 });
    scheduler.updateFromOutput(output, runner.execute(output));
    expect(scheduler.schedule().numScheduledTokens).toEqual({ a: 1, b: 100 });
  });
});

describe('Scheduler prefix caching', () => {
  it('admits a request with its cached prefix already computed', () => {
    const scheduler = makeScheduler();
    const runner = new FakeModelRunner(4, () => 7);
    const shared = range(20, 500);
    scheduler.addRequest({ requestId: 'a', promptTokenIds: shared, maxTokens: 5 });
    let output = scheduler.schedule();
    scheduler.updateFromOutput(output, runner.execute(output));
    scheduler.addRequest({ requestId: 'b', promptTokenIds: [...shared, 1, 2], maxTokens: 5 });
    output = scheduler.schedule();
    const admitted = output.scheduledNewRequests[0]!;
    expect(admitted.numComputedTokens).toBe(20);
    expect(output.numScheduledTokens.b).toBe(2);
    scheduler.updateFromOutput(output, runner.execute(output)); // the runner checks the hit slots' contents
    expect(scheduler.makeStats()).toMatchObject({ prefixCacheQueries: 42, prefixCacheHits: 20 });
  });
});

describe('Scheduler preemption', () => {
  /** Two requests on a pool that holds one of them fully: decoding forces a preemption. */
  function crowded(policy: 'fcfs' | 'priority', priorities: [number, number] = [0, 0]) {
    const scheduler = makeScheduler({ numBlocks: 6, blockSize: 4, maxModelLen: 24, policy });
    const runner = new FakeModelRunner(4, (_requestId, tokens) => tokens.length);
    scheduler.addRequest(request('a', 11, { maxTokens: 8, priority: priorities[0] }));
    scheduler.addRequest(request('b', 11, { maxTokens: 8, priority: priorities[1] }));
    return { scheduler, runner };
  }

  function stepUntilPreemption(scheduler: ReturnType<typeof makeScheduler>, runner: FakeModelRunner) {
    for (let step = 0; step < 20; step += 1) {
      const output = scheduler.schedule();
      scheduler.updateFromOutput(output, runner.execute(output));
      if (output.preemptedRequestIds.length > 0) return output;
    }
    throw new Error('no preemption happened');
  }

  it('under FCFS preempts the latest arrival, which keeps its tokens and resumes at the front of the queue', () => {
    const { scheduler, runner } = crowded('fcfs');
    const output = stepUntilPreemption(scheduler, runner);
    expect(output.preemptedRequestIds).toEqual(['b']);
    const victim = scheduler.getRequest('b')!;
    expect(victim.status).toBe(RequestStatus.Preempted);
    expect(victim.numComputedTokens).toBe(0);
    expect(victim.outputTokenIds.length).toBeGreaterThan(0);
    scheduler.addRequest(request('c', 2, { maxTokens: 2 }));
    // a finishes; b resumes before c, sent in full with its generated tokens
    let resumed;
    for (let step = 0; step < 20 && resumed === undefined; step += 1) {
      const next = scheduler.schedule();
      resumed = next.scheduledNewRequests.find((data) => data.requestId === 'b');
      if (resumed === undefined) expect(next.scheduledNewRequests.map((data) => data.requestId)).not.toContain('c');
      scheduler.updateFromOutput(next, runner.execute(next));
    }
    expect(resumed!.tokenIds).toEqual([...victim.promptTokenIds, ...victim.outputTokenIds.slice(0, resumed!.tokenIds.length - 11)]);
    expect(scheduler.makeStats().numPreemptionsTotal).toBe(1);
  });

  it('under the priority policy preempts the lowest priority (the highest value), whatever its arrival', () => {
    const { scheduler, runner } = crowded('priority', [5, 0]);
    expect(stepUntilPreemption(scheduler, runner).preemptedRequestIds).toEqual(['a']);
  });

  it('does not admit waiting requests in a step that preempted', () => {
    const { scheduler, runner } = crowded('fcfs');
    scheduler.addRequest(request('c', 1, { maxTokens: 1 }));
    const output = stepUntilPreemption(scheduler, runner);
    expect(output.scheduledNewRequests).toEqual([]);
  });
});

describe('Scheduler.addRequest', () => {
  it('refuses a request longer than max_model_len, in OpenAI’s words', () => {
    const scheduler = makeScheduler({ maxModelLen: 32 });
    const attempt = () => scheduler.addRequest(request('a', 30, { maxTokens: 10 }));
    expect(attempt).toThrow(RequestRejectedError);
    expect(attempt).toThrow(
      "This model's maximum context length is 32 tokens. However, you requested 40 tokens (30 in the prompt, 10 in the completion).",
    );
    expect(scheduler.hasUnfinishedRequests()).toBe(false);
  });

  it('refuses a request needing more blocks than the whole pool', () => {
    const scheduler = makeScheduler({ numBlocks: 4, blockSize: 4 });
    const error = (() => {
      try {
        scheduler.addRequest(request('a', 10, { maxTokens: 10 }));
      } catch (caught) {
        return caught;
      }
    })();
    expect(SchedulerError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: 'kv_cache_too_small', param: 'max_tokens' });
  });

  it('refuses an empty prompt, max_tokens below 0 and a duplicate id', () => {
    const scheduler = makeScheduler();
    expect(() => scheduler.addRequest({ requestId: 'a', promptTokenIds: [], maxTokens: 1 })).toThrow('at least one token');
    expect(() => scheduler.addRequest(request('a', 2, { maxTokens: -1 }))).toThrow('max_tokens must be at least 0, got -1');
    scheduler.addRequest(request('a', 2));
    expect(() => scheduler.addRequest(request('a', 2))).toThrow('request id a is already in use');
  });
});

describe('Scheduler: prompts computed for their logits', () => {
  it('ends a max_tokens 0 request once its prompt is computed, without a token', () => {
    const scheduler = makeScheduler({ maxNumBatchedTokens: 8 });
    const runner = new FakeModelRunner(4, () => 7);
    scheduler.addRequest({ requestId: 'score', promptTokenIds: Array.from({ length: 20 }, (_, index) => index + 1), maxTokens: 0 });
    const seen: Array<{ finishReason: string | undefined; newTokenIds: readonly number[] }> = [];
    for (let step = 0; step < 5 && scheduler.hasUnfinishedRequests(); step += 1) {
      const output = scheduler.schedule();
      seen.push(...scheduler.updateFromOutput(output, runner.execute(output)));
    }
    expect(seen).toEqual([expect.objectContaining({ requestId: 'score', finishReason: 'length', newTokenIds: [] })]);
    expect(scheduler.hasUnfinishedRequests()).toBe(false);
    expect(scheduler.makeStats().kvCacheUsage).toBe(0);
  });

  it('caps a request at maxTokensPerStep tokens a step, and skips the prefix cache when asked', () => {
    const scheduler = makeScheduler({ maxNumBatchedTokens: 64 });
    const runner = new FakeModelRunner(4, () => 7);
    const prompt = Array.from({ length: 32 }, (_, index) => index + 1);
    scheduler.addRequest({ requestId: 'warm', promptTokenIds: prompt, maxTokens: 1 });
    for (let step = 0; step < 3 && scheduler.hasUnfinishedRequests(); step += 1) {
      const output = scheduler.schedule();
      scheduler.updateFromOutput(output, runner.execute(output));
    }
    scheduler.addRequest({ requestId: 'chunked', promptTokenIds: prompt, maxTokens: 1, maxTokensPerStep: 10, skipPrefixCache: true });
    const counts: number[] = [];
    for (let step = 0; step < 6 && scheduler.hasUnfinishedRequests(); step += 1) {
      const output = scheduler.schedule();
      counts.push(output.numScheduledTokens.chunked ?? 0);
      scheduler.updateFromOutput(output, runner.execute(output));
    }
    expect(counts.slice(0, 4)).toEqual([10, 10, 10, 2]); // all 32 prompt tokens computed again, 10 at a time
    expect(scheduler.makeStats().prefixCacheHits).toBe(0);
  });
});

describe('Scheduler stop conditions', () => {
  /** Runs one request to its end with the runner emitting `tokens` in turn; returns the last update. */
  function runToEnd(init: Partial<RequestInit>, tokens: number[], maxModelLen = 256) {
    const scheduler = makeScheduler({ maxModelLen });
    let next = 0;
    const runner = new FakeModelRunner(4, () => tokens[next++ % tokens.length]!);
    scheduler.addRequest({ requestId: 'r', promptTokenIds: [1, 2, 3], maxTokens: 10, ...init });
    for (let step = 0; step < 50; step += 1) {
      const output = scheduler.schedule();
      const updates = scheduler.updateFromOutput(output, runner.execute(output));
      const update = updates.find((candidate) => candidate.finishReason !== undefined);
      if (update !== undefined) return { update, scheduler, generated: next };
    }
    throw new Error('the request did not finish');
  }

  it('stops at EOS, and not when EOS is ignored', () => {
    expect(runToEnd({ eosTokenIds: [2] }, [5, 2, 6]).update).toMatchObject({ finishReason: 'stop', newTokenIds: [2] });
    expect(runToEnd({ eosTokenIds: [2], ignoreEos: true }, [5, 2, 6]).update.finishReason).toBe('length');
  });

  it('stops at a stop token id and reports it as the stop reason', () => {
    expect(runToEnd({ stopTokenIds: [6] }, [5, 2, 6]).update).toMatchObject({ finishReason: 'stop', stopReason: 6 });
  });

  it('does not stop before min_tokens', () => {
    expect(runToEnd({ eosTokenIds: [2], minTokens: 4 }, [2]).generated).toBe(4);
  });

  it('stops at max_tokens and at max_model_len with finish reason length', () => {
    expect(runToEnd({ maxTokens: 3 }, [5]).generated).toBe(3);
    const atContext = runToEnd({ maxTokens: 7 }, [5], 10);
    expect(atContext.generated).toBe(7);
    expect(atContext.update.finishReason).toBe('length');
  });

  it('frees a finished request’s blocks and reports it as finished in the next output', () => {
    const { scheduler } = runToEnd({ maxTokens: 2 }, [5]);
    expect(scheduler.kvCacheManager.numFreeBlocks).toBe(64);
    expect(scheduler.schedule().finishedRequestIds).toEqual(['r']);
    expect(scheduler.hasUnfinishedRequests()).toBe(false);
  });
});

describe('Scheduler.finishRequests', () => {
  it('aborts running and waiting requests, freeing their blocks', () => {
    const scheduler = makeScheduler({ maxNumSeqs: 1 });
    scheduler.addRequest(request('a', 10));
    scheduler.addRequest(request('b', 10));
    scheduler.schedule();
    scheduler.finishRequests(['a', 'b', 'unknown'], RequestStatus.FinishedAborted);
    expect(scheduler.kvCacheManager.numFreeBlocks).toBe(64);
    expect(scheduler.hasUnfinishedRequests()).toBe(false);
    const output = scheduler.schedule();
    expect(output.finishedRequestIds).toEqual(['a', 'b']);
    expect(output.totalNumScheduledTokens).toBe(0);
  });

  it('voids tokens sampled for a request aborted while its step ran', () => {
    const scheduler = makeScheduler();
    const runner = new FakeModelRunner(4, () => 9);
    scheduler.addRequest(request('a', 3));
    const output = scheduler.schedule();
    const sampled = runner.execute(output);
    scheduler.finishRequests('a', RequestStatus.FinishedAborted);
    expect(scheduler.updateFromOutput(output, sampled)).toEqual([]);
  });

  it('refuses a status that is not a finished one', () => {
    expect(() => makeScheduler().finishRequests('a', RequestStatus.Running)).toThrow('needs a finished status');
  });
});

describe('SchedulerOutput', () => {
  it('is plain data: full for a new request, diffs afterwards, and survives structured cloning', () => {
    const scheduler = makeScheduler({ blockSize: 4 });
    const runner = new FakeModelRunner(4, () => 3);
    scheduler.addRequest(request('a', 7));
    const first = scheduler.schedule();
    expect(first.scheduledNewRequests[0]).toMatchObject({ requestId: 'a', blockIds: [0, 1], numComputedTokens: 0 });
    expect(structuredClone(first)).toEqual(first);
    scheduler.updateFromOutput(first, runner.execute(first));
    const second = scheduler.schedule();
    expect(second.scheduledNewRequests).toEqual([]);
    expect(second.scheduledCachedRequests).toEqual({ requestIds: ['a'], newTokenIds: [[3]], newBlockIds: [[]], numComputedTokens: [7] });
    scheduler.updateFromOutput(second, runner.execute(second));
    expect(scheduler.schedule().scheduledCachedRequests.newBlockIds).toEqual([[2]]);
  });

  it('takes arrival and first-scheduled times from the injected clock', () => {
    let now = 100;
    const scheduler = makeScheduler({}, () => now);
    const added = scheduler.addRequest(request('a', 3));
    now = 105;
    scheduler.schedule();
    expect(added.arrivalTime).toBe(100);
    expect(added.firstScheduledTime).toBe(105);
  });
});

describe('Scheduler micro-batches for pipeline parallelism', () => {
  it('splits the running requests over consecutive steps, so batches in flight hold different requests', () => {
    const scheduler = makeScheduler({ numMicroBatches: 2 });
    const runner = new FakeModelRunner(4, () => 7);
    for (const id of ['a', 'b', 'c', 'd']) scheduler.addRequest(request(id, 3));
    const prefill = scheduler.schedule();
    scheduler.updateFromOutput(prefill, runner.execute(prefill));
    // Two batches in flight: the second is scheduled before the first's tokens come back.
    const first = scheduler.schedule();
    const second = scheduler.schedule();
    expect(scheduledIds(first)).toEqual(['a', 'b']);
    expect(scheduledIds(second)).toEqual(['c', 'd']);
    scheduler.updateFromOutput(first, runner.execute(first));
    expect(scheduledIds(scheduler.schedule())).toEqual(['a', 'b']);
  });

  it('refuses a number of micro-batches below one', () => {
    expect(() => makeScheduler({ numMicroBatches: 0 })).toThrow('the number of micro-batches must be a positive integer, got 0');
  });
});

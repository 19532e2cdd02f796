import { describe, expect, it } from 'vitest';
import { RequestStatus, type FinishReason, type RequestInit } from './index';
import { FakeModelRunner, makeScheduler } from './test-runner';

/** A small seeded generator (mulberry32), so every simulation is reproducible. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

const EOS = 2;

interface Planned {
  init: RequestInit;
  arrivalStep: number;
  /** The output index at which the model emits EOS, if it does. */
  eosAt: number | undefined;
  abortStep: number | undefined;
  sequence: number;
}

/** The token the fake model emits for a request at a position: a fixed function, so recompute reproduces it. */
const tokenAt = (seed: number, position: number) => 10 + ((seed * 7919 + position * 104729) % 30_000);

function simulate(options: { seed: number; numRequests: number; policy: 'fcfs' | 'priority' }) {
  const random = seededRandom(options.seed);
  const blockSize = 16;
  const numBlocks = 700; // 11,200 token slots: a few long prompts fill it, so requests get preempted
  const maxModelLen = 4096 + 256;
  const maxNumSeqs = 32;
  const maxNumBatchedTokens = 1024;
  const scheduler = makeScheduler({ numBlocks, blockSize, maxModelLen, maxNumSeqs, maxNumBatchedTokens, policy: options.policy });

  const bases = Array.from({ length: 4 }, (_, base) => Array.from({ length: 4096 }, (__, index) => 40_000 + ((base * 1_000_003 + index * 31) % 20_000)));
  const plans: Planned[] = [];
  let arrivalStep = 0;
  for (let index = 0; index < options.numRequests; index += 1) {
    arrivalStep += random() < 0.5 ? 0 : Math.floor(random() * 4);
    const long = random() < 0.15;
    const promptLength = 1 + Math.floor(random() * (long ? 4095 : 255));
    const sharedLength = random() < 0.5 ? Math.floor(random() * promptLength) : 0;
    const base = bases[Math.floor(random() * bases.length)]!;
    const seed = index + 1;
    const promptTokenIds = [...base.slice(0, sharedLength), ...Array.from({ length: promptLength - sharedLength }, (_, offset) => tokenAt(seed + 5000, offset))];
    const maxTokens = 1 + Math.floor(random() * 128);
    plans.push({
      init: { requestId: `r${index}`, promptTokenIds, maxTokens, eosTokenIds: [EOS], priority: Math.floor(random() * 3) },
      arrivalStep,
      eosAt: random() < 0.3 ? Math.floor(random() * maxTokens) : undefined,
      abortStep: random() < 0.05 ? arrivalStep + Math.floor(random() * 200) : undefined,
      sequence: index,
    });
  }
  const plansById = new Map(plans.map((plan) => [plan.init.requestId, plan]));
  const runner = new FakeModelRunner(
    blockSize,
    (requestId, tokenIds) => {
      const plan = plansById.get(requestId)!;
      const outputIndex = tokenIds.length - plan.init.promptTokenIds.length;
      return outputIndex === plan.eosAt ? EOS : tokenAt(plan.sequence + 1, tokenIds.length);
    },
    'admission',
  );

  const outputs = new Map<string, number[]>();
  const finishReasons = new Map<string, FinishReason>();
  const firstAdmissions: number[] = [];
  const admittedOnce = new Set<string>();
  let nextPlan = 0;
  let step = 0;
  let maxStepsWithoutProgress = 0;
  while (nextPlan < plans.length || scheduler.hasUnfinishedRequests()) {
    while (nextPlan < plans.length && plans[nextPlan]!.arrivalStep <= step) {
      const plan = plans[nextPlan++]!;
      scheduler.addRequest(plan.init);
      outputs.set(plan.init.requestId, []);
    }
    const toAbort = plans.filter((plan) => plan.abortStep === step && scheduler.getRequest(plan.init.requestId) !== undefined);
    for (const plan of toAbort) finishReasons.set(plan.init.requestId, 'abort');
    scheduler.finishRequests(toAbort.map((plan) => plan.init.requestId), RequestStatus.FinishedAborted);

    const output = scheduler.schedule();
    const sum = Object.values(output.numScheduledTokens).reduce((total, count) => total + count, 0);
    expect(sum).toBe(output.totalNumScheduledTokens);
    expect(output.totalNumScheduledTokens).toBeLessThanOrEqual(maxNumBatchedTokens);
    expect(scheduler.numRunningRequests).toBeLessThanOrEqual(maxNumSeqs);
    for (const data of output.scheduledNewRequests) {
      if (!admittedOnce.has(data.requestId)) {
        admittedOnce.add(data.requestId);
        firstAdmissions.push(plansById.get(data.requestId)!.sequence);
      }
    }
    const updates = scheduler.updateFromOutput(output, runner.execute(output));
    for (const update of updates) {
      outputs.get(update.requestId)!.push(...update.newTokenIds);
      if (update.finishReason !== undefined) finishReasons.set(update.requestId, update.finishReason);
    }
    maxStepsWithoutProgress = output.totalNumScheduledTokens === 0 && scheduler.hasUnfinishedRequests() && nextPlan >= plans.length ? maxStepsWithoutProgress + 1 : 0;
    expect(maxStepsWithoutProgress).toBeLessThan(5); // nothing waits forever
    step += 1;
  }

  for (const plan of plans) {
    const requestId = plan.init.requestId;
    const output = outputs.get(requestId)!;
    const expected: number[] = [];
    for (let outputIndex = 0; outputIndex < plan.init.maxTokens; outputIndex += 1) {
      const tokenId = outputIndex === plan.eosAt ? EOS : tokenAt(plan.sequence + 1, plan.init.promptTokenIds.length + outputIndex);
      expected.push(tokenId);
      if (tokenId === EOS) break;
    }
    if (finishReasons.get(requestId) === 'abort') {
      expect(expected.slice(0, output.length)).toEqual(output);
    } else {
      expect(output).toEqual(expected);
      expect(finishReasons.get(requestId)).toBe(expected.at(-1) === EOS ? 'stop' : 'length');
    }
  }
  expect(scheduler.kvCacheManager.numFreeBlocks).toBe(numBlocks);
  return { steps: step, firstAdmissions, stats: scheduler.makeStats() };
}

describe('Scheduler simulation: thousands of random requests on a pool small enough to preempt', () => {
  it.each([1, 2, 3])('under FCFS (seed %i): exact outputs, budgets kept, FCFS admission order, all blocks freed', (seed) => {
    const { firstAdmissions, stats } = simulate({ seed, numRequests: 1500, policy: 'fcfs' });
    expect(firstAdmissions).toEqual([...firstAdmissions].sort((left, right) => left - right));
    expect(firstAdmissions).toHaveLength(new Set(firstAdmissions).size);
    expect(stats.numPreemptionsTotal).toBeGreaterThan(0);
    expect(stats.prefixCacheHits).toBeGreaterThan(0);
  });

  it('under the priority policy: exact outputs, budgets kept, all blocks freed', () => {
    const { stats } = simulate({ seed: 4, numRequests: 1500, policy: 'priority' });
    expect(stats.numPreemptionsTotal).toBeGreaterThan(0);
  });
});

import { KVCacheManager } from '@pagoda/kv-cache';
import { Sampler, validateSamplingParams } from '@pagoda/sampling';
import { RequestStatus, Scheduler } from '@pagoda/scheduler';
import { describe, expect, it } from 'vitest';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import { EngineCore } from './engine-core';
import type { EngineCoreOutput, ModelExecutor } from './engine-core';

const vocabSize = 16;

/** The token that follows `position` in every sequence: outputs depend on positions only, never on batching. */
const tokenAfter = (position: number): number => (position * 5 + 3) % vocabSize;

/** An executor whose logits pick {@link tokenAfter} the request's last new token; it records every batch. */
function positionalExecutor(): ModelExecutor & { batches: ModelRunnerRequest[][] } {
  const batches: ModelRunnerRequest[][] = [];
  return {
    batches,
    async execute(requests): Promise<ModelRunnerOutput> {
      batches.push(requests.map((request) => ({ ...request, tokenIds: Array.from(request.tokenIds) })));
      const sampling = requests.filter((request) => (request.logits ?? 'last') === 'last');
      const logits = new Float32Array(sampling.length * vocabSize);
      sampling.forEach((request, row) => {
        logits[row * vocabSize + tokenAfter(request.numComputedTokens + request.tokenIds.length - 1)] = 1;
      });
      const logitsRowStart = new Int32Array(requests.length + 1);
      let row = 0;
      requests.forEach((request, index) => {
        logitsRowStart[index] = row;
        if ((request.logits ?? 'last') === 'last') row += 1;
      });
      logitsRowStart[requests.length] = row;
      return { logits, vocabSize, logitsRowStart };
    },
    async release() {},
  };
}

function engineCore(options: { numBlocks: number; maxBatchesInFlight: number; maxNumBatchedTokens: number; longPrefillTokenThreshold: number }) {
  const { maxNumBatchedTokens, longPrefillTokenThreshold } = options;
  const scheduler = new Scheduler(
    { maxNumSeqs: 4, maxNumBatchedTokens, maxModelLen: 64, longPrefillTokenThreshold },
    new KVCacheManager({ numBlocks: options.numBlocks, blockSize: 2, maxModelLen: 64, enablePrefixCaching: false }),
  );
  const executor = positionalExecutor();
  const core = new EngineCore(scheduler, executor, new Sampler(), { maxBatchesInFlight: options.maxBatchesInFlight });
  const add = (requestId: string, promptTokenIds: number[], maxTokens: number) =>
    core.addRequest({
      requestId,
      promptTokenIds,
      samplingParams: validateSamplingParams({ temperature: 0, maxTokens, ignoreEos: true }, { vocabSize, maxLogprobs: 0 }),
      eosTokenIds: [],
    });
  return { core, executor, add };
}

function collect(outputs: EngineCoreOutput[], into: Map<string, number[]>): void {
  for (const output of outputs) into.set(output.requestId, [...(into.get(output.requestId) ?? []), ...output.newTokenIds]);
}

describe('EngineCore with several batches in flight (pipeline parallelism)', () => {
  it('submits the next batch before sampling the previous one, and gives every request the tokens of one batch at a time', async () => {
    const runs = await Promise.all(
      [1, 2, 3].map(async (maxBatchesInFlight) => {
        const { core, executor, add } = engineCore({ numBlocks: 64, maxBatchesInFlight, maxNumBatchedTokens: 4, longPrefillTokenThreshold: 2 });
        add('long', Array.from({ length: 9 }, (_, index) => index), 4);
        add('short', [7], 4);
        const tokens = new Map<string, number[]>();
        collect(await core.step(), tokens);
        if (maxBatchesInFlight > 1) {
          // The first step only submitted: nothing is sampled yet, and the second batch goes out before it is.
          expect(tokens.size).toBe(0);
          collect(await core.step(), tokens);
          expect(executor.batches).toHaveLength(2);
        }
        while (core.hasUnfinishedRequests()) collect(await core.step(), tokens);
        return { tokens, steps: executor.batches.length };
      }),
    );
    for (const { tokens } of runs) {
      expect(tokens.get('long')).toEqual([8, 9, 10, 11].map(tokenAfter));
      expect(tokens.get('short')).toEqual([0, 1, 2, 3].map(tokenAfter));
    }
  });

  it('drops the token a request would get from a batch that was in flight when it was preempted, even once it runs again', async () => {
    // Three blocks of two slots. Step 1 runs long's first 4 prompt tokens and short; step 2's last prompt token of
    // long needs short's block, so short is preempted while its sampling batch is in flight; long is aborted, and
    // step 3 admits short again before the first batch is sampled.
    const { core, executor, add } = engineCore({ numBlocks: 3, maxBatchesInFlight: 3, maxNumBatchedTokens: 5, longPrefillTokenThreshold: 4 });
    add('long', [10, 11, 12, 13, 14], 1);
    add('short', [7], 3);
    const tokens = new Map<string, number[]>();
    collect(await core.step(), tokens);
    collect(await core.step(), tokens);
    expect(core.scheduler.makeStats().numPreemptionsTotal).toBe(1);
    core.finishRequests(['long'], RequestStatus.FinishedAborted);
    while (core.hasUnfinishedRequests()) collect(await core.step(), tokens);
    expect(executor.batches.length).toBeGreaterThan(3);
    expect(tokens.get('short')).toEqual([0, 1, 2].map(tokenAfter));
    expect(core.scheduler.kvCacheManager.usage).toBe(0);
  });
});

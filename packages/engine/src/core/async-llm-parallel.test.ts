import { fixturePath, readReference } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AsyncLLM, EngineDeadError } from './async-llm';
import { collect } from './test-streams';

describe('AsyncLLM on tiny-llama at tensor_parallel_size 2, pipeline_parallel_size 2', () => {
  const reference = readReference('tiny-llama');
  let engine: AsyncLLM;
  beforeAll(async () => {
    engine = await AsyncLLM.create(fixturePath('tiny-llama'), {
      kvCacheMemory: '8MiB',
      maxModelLen: 512,
      intraOpNumThreads: 1,
      tensorParallelSize: 2,
      pipelineParallelSize: 2,
    });
  });
  afterAll(() => engine?.close());

  it('streams the reference greedy text while other requests are aborted as their batches run on the ranks', async () => {
    const greedy = reference.prompts.map((prompt) =>
      collect(engine.generate({ prompt: prompt.ids, samplingParams: { temperature: 0, maxTokens: 24, ignoreEos: true } })),
    );
    // A step's model run is a wait on the rank workers, so aborts reach the engine core in the middle of steps.
    const aborted = Array.from({ length: 4 }, async (_, index) => {
      let count = 0;
      for await (const delta of engine.generate({ prompt: reference.prompts[index % 3]!.ids, samplingParams: { maxTokens: 100, ignoreEos: true } })) {
        count += delta.outputs[0]!.tokenIds.length;
        if (count >= 2 + index) break;
      }
      return count;
    });
    const [results, counts] = await Promise.all([Promise.all(greedy), Promise.all(aborted)]);
    results.forEach((deltas, index) => {
      const expected = reference.prompts[index]!.greedy;
      expect(deltas.flatMap((delta) => delta.outputs[0]!.tokenIds)).toEqual(expected.ids);
      expect(deltas.map((delta) => delta.outputs[0]!.text).join('')).toBe(expected.text_in_context);
    });
    counts.forEach((count) => expect(count).toBeLessThan(100));
    const deadline = Date.now() + 5000;
    while (engine.makeStats().numRunningRequests > 0 || engine.makeStats().kvCacheUsage > 0) {
      if (Date.now() > deadline) throw new Error('the aborted requests were not freed');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(engine.health()).toBe('ready');
  });
});

describe('AsyncLLM when a tensor-parallel rank dies', () => {
  it('fails every waiting caller with EngineDeadError and reports itself dead, never hanging', async () => {
    const engine = await AsyncLLM.create(fixturePath('tiny-qwen2'), {
      kvCacheMemory: '4MiB',
      maxModelLen: 512,
      intraOpNumThreads: 1,
      tensorParallelSize: 2,
    });
    const streams = [0, 1].map((index) =>
      collect(engine.generate({ prompt: `request ${index}`, samplingParams: { maxTokens: 400, ignoreEos: true } })),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    (engine as unknown as { worker: { postMessage(message: unknown): void } }).worker.postMessage({ type: 'inject-fault', message: 'rank exit', target: 'rank' });
    for (const stream of streams) await expect(stream).rejects.toBeInstanceOf(EngineDeadError);
    await expect(streams[0]).rejects.toThrow(/rank \d|worker/);
    expect(engine.health()).toBe('dead');
    await engine.close();
  }, 60_000);
});

import { fixturePath, readReference } from '@pagoda/fixtures';
import type { CheckpointName } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineOptions } from './engine-options';
import { LLM } from './llm';

const greedy = { temperature: 0, maxTokens: 24, ignoreEos: true };

// Every layout's logits and greedy tokens are checked in parallel-executor.test.ts; here the whole engine runs the
// combined layouts (each splits every weight and passes hidden states between stages) end to end.
describe.each<[CheckpointName, number, number]>([
  ['tiny-llama', 2, 2],
  ['tiny-qwen2', 2, 2],
  ['tiny-qwen3', 2, 3],
])('LLM.generate on %s at tensor_parallel_size %i, pipeline_parallel_size %i', (checkpoint, tp, pp) => {
  const reference = readReference(checkpoint);
  let llm: LLM;
  beforeAll(async () => {
    llm = await LLM.create(fixturePath(checkpoint), {
      kvCacheMemory: '16MiB',
      maxModelLen: 1024,
      intraOpNumThreads: 1,
      tensorParallelSize: tp,
      pipelineParallelSize: pp,
    });
  });
  afterAll(() => llm?.close());

  it('reproduces the reference greedy tokens and text of every prompt', async () => {
    const outputs = await llm.generate(reference.prompts.map((prompt) => prompt.ids), greedy);
    outputs.forEach((output, index) => {
      const expected = reference.prompts[index]!;
      expect(output.outputs[0]!.tokenIds).toEqual(expected.greedy.ids);
      expect(output.outputs[0]!.text).toBe(expected.greedy.text_in_context);
    });
  });
});

describe('LLM under pressure at tensor_parallel_size 2, pipeline_parallel_size 2: preemption, chunked prefill, prefix caching', () => {
  const reference = readReference('tiny-llama');
  // As llm.test.ts's busy run: 40 blocks of 16 tokens are too few for 16 requests, so requests are preempted.
  const options: EngineOptions = {
    kvCacheMemory: 40 * 16 * 512,
    maxModelLen: 400,
    maxNumBatchedTokens: 64,
    maxNumSeqs: 16,
    intraOpNumThreads: 1,
  };
  let single: LLM;
  let parallel: LLM;
  beforeAll(async () => {
    [single, parallel] = await Promise.all([
      LLM.create(fixturePath('tiny-llama'), options),
      LLM.create(fixturePath('tiny-llama'), { ...options, tensorParallelSize: 2, pipelineParallelSize: 2 }),
    ]);
  });
  afterAll(() => Promise.all([single?.close(), parallel?.close()]));

  it('plans the same number of KV blocks as one rank, and gives each of 16 concurrent requests its single-rank output', async () => {
    expect(parallel.context.options.kvCache?.numBlocks).toBe(single.context.options.kvCache?.numBlocks);
    const prompts = Array.from({ length: 16 }, (_, index) => reference.prompts[index % 3]!.ids);
    const params = prompts.map((_, index) =>
      index % 2 === 0 ? greedy : { temperature: 0.9, topP: 0.9, seed: 1000 + index, maxTokens: 24, ignoreEos: true },
    );
    const [together, alone] = await Promise.all([parallel.generate(prompts, params), single.generate(prompts, params)]);
    const stats = parallel.makeStats();
    expect(stats.numPreemptionsTotal).toBeGreaterThan(0);
    expect(stats.prefixCacheHits).toBeGreaterThan(0);
    together.forEach((output, index) => {
      expect(output.outputs[0]!.tokenIds, `request ${index}`).toEqual(alone[index]!.outputs[0]!.tokenIds);
      if (index % 2 === 0) expect(output.outputs[0]!.tokenIds).toEqual(reference.prompts[index % 3]!.greedy.ids);
    });
    expect(parallel.makeStats().kvCacheUsage).toBe(0);
  });
});

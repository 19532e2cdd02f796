import { checkpointNames, fixturePath, readReference } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LLM } from './llm';

const greedy = { temperature: 0, maxTokens: 24, ignoreEos: true };

describe.each(checkpointNames)('LLM.generate on %s', (checkpoint) => {
  const reference = readReference(checkpoint);
  let llm: LLM;
  beforeAll(async () => {
    llm = await LLM.create(fixturePath(checkpoint), { kvCacheMemory: '16MiB', maxModelLen: 1024, intraOpNumThreads: 1 });
  });
  afterAll(() => llm.close());

  it('reproduces the reference greedy tokens and streamed text of every prompt, in input order', async () => {
    const outputs = await llm.generate(reference.prompts.map((prompt) => prompt.ids), greedy);
    outputs.forEach((output, index) => {
      const expected = reference.prompts[index]!;
      expect(output.promptTokenIds).toEqual(expected.ids);
      expect(output.outputs[0]!.tokenIds).toEqual(expected.greedy.ids);
      expect(output.outputs[0]!.text).toBe(expected.greedy.text_in_context);
      expect(output.outputs[0]!.finishReason).toBe('length');
      expect(output.finished).toBe(true);
    });
  });
});

// The same busy run on the CPU runner and on the GPU runner's graph (paged reference attention): scheduling,
// preemption and prefix caching reach the model through gathered slots in one, block tables in the other.
describe.each([
  ['the CPU runner', {}],
  ['the paged reference runner', { modelRunner: 'paged-reference' as const }],
])('LLM under pressure on %s: a pool small enough to preempt, chunked prefill and prefix caching on', (_runner, runnerOptions) => {
  const reference = readReference('tiny-llama');
  let busy: LLM;
  beforeAll(async () => {
    // 40 blocks of 16 tokens: the three prompts' shared blocks take 26, too few are left for 16 requests' outputs.
    busy = await LLM.create(fixturePath('tiny-llama'), {
      ...runnerOptions,
      kvCacheMemory: 40 * 16 * 512,
      maxModelLen: 400,
      maxNumBatchedTokens: 64,
      maxNumSeqs: 16,
      intraOpNumThreads: 1,
    });
  });
  afterAll(() => busy.close());

  it('gives each of 16 concurrent requests its solo output', async () => {
    const prompts = Array.from({ length: 16 }, (_, index) => reference.prompts[index % 3]!.ids);
    const params = prompts.map((_, index) => (index % 2 === 0 ? greedy : { temperature: 0.9, topP: 0.9, seed: 1000 + index, maxTokens: 24, ignoreEos: true }));
    const together = await busy.generate(prompts, params);
    const stats = busy.makeStats();
    expect(stats.numPreemptionsTotal).toBeGreaterThan(0);
    expect(stats.prefixCacheHits).toBeGreaterThan(0);
    for (let index = 0; index < prompts.length; index += 1) {
      const [alone] = await busy.generate([prompts[index]!], params[index]);
      expect(together[index]!.outputs[0]!.tokenIds).toEqual(alone!.outputs[0]!.tokenIds);
      if (index % 2 === 0) expect(alone!.outputs[0]!.tokenIds).toEqual(reference.prompts[index % 3]!.greedy.ids);
    }
    expect(busy.makeStats().kvCacheUsage).toBe(0);
  });
});

describe('LLM requests', () => {
  let llm: LLM;
  beforeAll(async () => {
    llm = await LLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '8MiB', maxModelLen: 512, intraOpNumThreads: 1 });
  });
  afterAll(() => llm.close());

  it('gives a seeded request the same text every time, and n samples that differ', async () => {
    const params = { temperature: 1, seed: 7, maxTokens: 12, n: 3, ignoreEos: true };
    const [first] = await llm.generate('Hello', params);
    const [second] = await llm.generate('Hello', params);
    expect(first!.outputs.map((output) => output.text)).toEqual(second!.outputs.map((output) => output.text));
    expect(first!.outputs).toHaveLength(3);
    expect(new Set(first!.outputs.map((output) => output.tokenIds.join())).size).toBe(3);
  });

  it('shares the prompt of an n > 1 request through the prefix cache', async () => {
    const before = llm.makeStats().prefixCacheHits;
    const prompt = 'word '.repeat(40);
    const [output] = await llm.generate(prompt, { temperature: 1, seed: 3, maxTokens: 4, n: 4 });
    expect(output!.outputs).toHaveLength(4);
    const promptLength = output!.promptTokenIds.length;
    expect(llm.makeStats().prefixCacheHits - before).toBeGreaterThanOrEqual(3 * 16 * Math.floor((promptLength - 1) / 16));
  });

  it('applies generation_config.json defaults unless the request sets the parameter', async () => {
    expect(llm.context.generationConfig.defaults).toMatchObject({ temperature: 0.7, topP: 0.8, topK: 20 });
    const [a] = await llm.generate('Hi', { seed: 5, maxTokens: 8, ignoreEos: true });
    const [b] = await llm.generate('Hi', { seed: 5, maxTokens: 8, ignoreEos: true, temperature: 0.7, topP: 0.8, topK: 20 });
    expect(a!.outputs[0]!.tokenIds).toEqual(b!.outputs[0]!.tokenIds);
  });

  it('ends at a stop string, cutting it from the text', async () => {
    const [free] = await llm.generate('Hi', { temperature: 0, maxTokens: 16, ignoreEos: true });
    const text = free!.outputs[0]!.text;
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
    const [stopped] = await llm.generate('Hi', { temperature: 0, maxTokens: 16, ignoreEos: true, stop: [stop] });
    expect(stopped!.outputs[0]!.finishReason).toBe('stop');
    expect(stopped!.outputs[0]!.stopReason).toBe(stop);
    expect(stopped!.outputs[0]!.text).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('chats through the chat template', async () => {
    const [output] = await llm.chat([{ role: 'user', content: 'What is paged attention?' }], { temperature: 0, maxTokens: 4 });
    expect(output!.prompt).toBe('<|im_start|>user\nWhat is paged attention?<|im_end|>\n<|im_start|>assistant\n');
    expect(output!.outputs[0]!.tokenIds.length).toBeGreaterThan(0);
  });

  it('refuses bad input before running anything', async () => {
    await expect(llm.generate(['ok', 'also ok'], { topP: 1.5 })).rejects.toThrow('top_p must be in (0, 1], got 1.5');
    await expect(llm.generate('x'.repeat(10), { maxTokens: 600 })).rejects.toThrow(/maximum context length is 512 tokens/);
    await expect(llm.generate([[1, 2, 999999]])).rejects.toThrow(/outside the vocabulary/);
    expect(llm.makeStats().numWaitingRequests).toBe(0);
  });

  it('returns logprobs of the sampled tokens when asked', async () => {
    const [output] = await llm.generate('Hello', { temperature: 0, maxTokens: 3, logprobs: 2 });
    const logprobs = output!.outputs[0]!.logprobs!;
    expect(logprobs).toHaveLength(3);
    logprobs.forEach((entry, index) => {
      expect(entry.tokenId).toBe(output!.outputs[0]!.tokenIds[index]);
      expect(entry.rank).toBe(1);
      expect(entry.top).toHaveLength(2);
      expect(entry.top[0]!.logprob).toBe(entry.logprob);
    });
  });
});

describe('LLM statistics', () => {
  it('counts tokens in and out', async () => {
    const llm = await LLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '4MiB', maxModelLen: 256, intraOpNumThreads: 1 });
    try {
      const [output] = await llm.generate([[1, 2, 3, 4, 5]], { temperature: 0, maxTokens: 7, ignoreEos: true });
      expect(output!.outputs[0]!.tokenIds).toHaveLength(7);
      expect(llm.makeStats()).toMatchObject({ promptTokens: 5, generationTokens: 7, finishedRequests: 1, numRunningRequests: 0 });
    } finally {
      await llm.close();
    }
  });
});

import { checkpointNames, decodeFloat32Base64, fixturePath, readReference } from '@pagoda/fixtures';
import type { SampledTokenLogprobs } from '@pagoda/sampling';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LLM } from './llm';

/**
 * Each prompt position's top 5 against the reference's one forward pass: `top_logprobs` at token i are the logits at
 * position i - 1 minus their log-sum-exp. Positions whose reference top 5 hold near-ties (within 1e-4) may order
 * them differently, so entries are matched by id.
 */
function expectPromptLogprobs(
  scored: ReadonlyArray<SampledTokenLogprobs | null>,
  reference: ReturnType<typeof readReference>['prompts'][number],
): void {
  expect(scored).toHaveLength(reference.ids.length);
  expect(scored[0]).toBeNull();
  for (let token = 1; token < reference.ids.length; token += 1) {
    const entry = scored[token]!;
    const position = reference.prefill[token - 1]!;
    expect(entry.tokenId).toBe(reference.ids[token]);
    expect(entry.top).toHaveLength(5);
    const expected = new Map(position.ids.map((id, index) => [id, position.logits[index]! - position.lse]));
    for (const top of entry.top) expect(Math.abs(top.logprob - expected.get(top.tokenId)!), `token ${token} id ${top.tokenId}`).toBeLessThan(1e-3);
    const own = expected.get(entry.tokenId);
    if (own !== undefined) expect(Math.abs(entry.logprob - own)).toBeLessThan(1e-3);
  }
}

describe.each(checkpointNames)('prompt logprobs on %s', (checkpoint) => {
  const reference = readReference(checkpoint);
  let llm: LLM;
  beforeAll(async () => {
    llm = await LLM.create(fixturePath(checkpoint), { kvCacheMemory: '16MiB', maxModelLen: 1024, intraOpNumThreads: 1 });
  });
  afterAll(() => llm.close());

  it('scores every prompt token as the reference’s forward pass does, in 64-token chunks, long prompt included', async () => {
    const outputs = await llm.generate(reference.prompts.map((prompt) => prompt.ids), { temperature: 0, maxTokens: 1, promptLogprobs: 5 });
    outputs.forEach((output, index) => expectPromptLogprobs(output.promptLogprobs!, reference.prompts[index]!));
    // The first generated token comes from the last position's logits, which the reference keeps whole.
    const last = decodeFloat32Base64(reference.prompts[0]!.last_logits_f32_b64!);
    const best = last.reduce((bestIndex, value, index) => (value > last[bestIndex]! ? index : bestIndex), 0);
    expect(outputs[0]!.outputs[0]!.tokenIds).toEqual([best]);
  });

  it('with max_tokens 0 scores the prompt and generates nothing, even when its prefix is cached', async () => {
    const prompt = reference.prompts[2]!;
    await llm.generate([prompt.ids], { temperature: 0, maxTokens: 1 }); // leaves the prompt's blocks in the prefix cache
    const [output] = await llm.generate([prompt.ids], { maxTokens: 0, promptLogprobs: 5 });
    expect(output!.outputs[0]).toMatchObject({ tokenIds: [], text: '', finishReason: 'length' });
    expect(output!.numCachedTokens).toBe(0);
    expectPromptLogprobs(output!.promptLogprobs!, prompt);
  });
});

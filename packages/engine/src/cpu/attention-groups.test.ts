import { fixturePath, readReference } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attentionGroups, executeInAttentionGroups } from './attention-groups';
import { ModelRunner } from './model-runner';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import { argmax, maxDifference } from '../test-logits';

const request = (queryLength: number, numComputedTokens: number): ModelRunnerRequest => ({
  tokenIds: Array.from({ length: queryLength }, () => 1),
  numComputedTokens,
  blockTable: [],
});

describe('attentionGroups', () => {
  it('keeps a pure decode batch and a pure prefill batch in one run', () => {
    expect(attentionGroups([request(1, 100), request(1, 300), request(1, 50)])).toBeUndefined();
    expect(attentionGroups([request(128, 0), request(100, 0), request(128, 28)])).toBeUndefined();
  });

  it('splits decodes from a long prompt chunk they would be padded to', () => {
    expect(attentionGroups([request(1, 256), request(2048, 0), request(1, 300), request(1, 10)])).toEqual([[0, 2, 3], [1]]);
  });

  it('merges the groups’ logits back into request order', async () => {
    const vocabSize = 2;
    const requests = [request(1, 256), request(2048, 0), request(1, 300)];
    const run = async (group: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput> => {
      // Each request's row holds its own context length, so the merged order can be checked.
      const logits = new Float32Array(group.length * vocabSize);
      group.forEach((entry, index) => logits.set([entry.numComputedTokens, entry.tokenIds.length], index * vocabSize));
      return { logits, vocabSize, logitsRowStart: Int32Array.from(group.map((_, index) => index).concat(group.length)) };
    };
    const merged = await executeInAttentionGroups(requests, run);
    expect([...merged.logits]).toEqual([256, 1, 0, 2048, 300, 1]);
    expect([...merged.logitsRowStart]).toEqual([0, 1, 2, 3]);
  });
});

describe('a mixed batch on tiny-llama', () => {
  const blockSize = 16;
  let runner: ModelRunner;
  beforeAll(async () => {
    runner = await ModelRunner.load(fixturePath('tiny-llama'), { numBlocks: 128, blockSize, intraOpNumThreads: 1 });
  });
  afterAll(() => runner.release());

  it('gives the same logits split in two groups as each group run alone', async () => {
    const prompts = readReference('tiny-llama').prompts;
    // Prefill the two short prompts (blocks 0-1 and 2-3), then decode them beside the long prompt's prefill.
    const shortTables = [[0, 1], [2, 3]];
    await runner.execute(prompts.slice(0, 2).map((prompt, index) => ({ tokenIds: prompt.ids, numComputedTokens: 0, blockTable: shortTables[index]!, logits: 'none' as const })));
    const decodes = prompts.slice(0, 2).map((prompt, index) => ({ tokenIds: [prompt.greedy.ids[0]!], numComputedTokens: prompt.ids.length, blockTable: shortTables[index]! }));
    const long = { tokenIds: prompts[2]!.ids, numComputedTokens: 0, blockTable: Array.from({ length: 24 }, (_, index) => 10 + index) };
    const mixed = [decodes[0]!, long, decodes[1]!];
    expect(attentionGroups(mixed)).toEqual([[0, 2], [1]]);
    const together = await runner.execute(mixed);
    const alone = [await runner.execute([decodes[0]!]), await runner.execute([long]), await runner.execute([decodes[1]!])];
    const vocabSize = together.vocabSize;
    const rowOf = (index: number) => together.logits.subarray(index * vocabSize, (index + 1) * vocabSize);
    alone.forEach((output, index) => expect(maxDifference(rowOf(index), output.logits)).toBeLessThan(1e-4));
    // The decodes' greedy tokens are the reference's second tokens.
    expect(argmax(rowOf(0))).toBe(prompts[0]!.greedy.ids[1]);
    expect(argmax(rowOf(2))).toBe(prompts[1]!.greedy.ids[1]);
  });
});

import { fixturePath, readReference } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attentionGroups, executeInAttentionGroups, runTokenCap, tokenRuns } from './attention-groups';
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
    const requests = [request(1, 256), { ...request(2048, 0), logits: 'all' as const }, request(1, 300)];
    // Each row holds its request's position and the run's size, as the runner's contract says: 'last' one row,
    // 'all' one per token, 'none' none.
    const run = async (group: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput> => {
      const rows: number[][] = [];
      const logitsRowStart = [0];
      for (const entry of group) {
        const count = entry.logits === 'none' ? 0 : entry.logits === 'all' ? entry.tokenIds.length : 1;
        const first = entry.numComputedTokens + entry.tokenIds.length - count;
        for (let row = 0; row < count; row += 1) rows.push([first + row, group.length]);
        logitsRowStart.push(rows.length);
      }
      return { logits: Float32Array.from(rows.flat()), vocabSize, logitsRowStart: Int32Array.from(logitsRowStart) };
    };
    const merged = await executeInAttentionGroups(requests, run);
    expect([...merged.logitsRowStart]).toEqual([0, 1, 2049, 2050]);
    // The decodes ran together (2 requests), the long prompt as 8 runs of 256 tokens, its rows in token order.
    expect([...merged.logits.subarray(0, 2)]).toEqual([256, 2]);
    expect(Array.from({ length: 2048 }, (_, row) => merged.logits[(1 + row) * vocabSize])).toEqual(Array.from({ length: 2048 }, (_, row) => row));
    expect([...merged.logits.subarray(2049 * vocabSize)]).toEqual([300, 2]);
  });

  it('packs requests into runs of at most the cap, cutting one that does not fit, its logits on its last piece', () => {
    const runs = tokenRuns([request(100, 0), request(300, 40), { ...request(50, 0), logits: 'all' }], [0, 1, 2], 256);
    expect(runs.map((parts) => parts.map(({ request: index, part }) => [index, part.numComputedTokens, part.tokenIds.length, part.logits ?? 'last']))).toEqual([
      [[0, 0, 100, 'last'], [1, 40, 156, 'none']],
      [[1, 196, 144, 'last'], [2, 0, 50, 'all']],
    ]);
  });
});

describe('a mixed batch on tiny-llama', () => {
  const blockSize = 16;
  let runner: ModelRunner;
  beforeAll(async () => {
    runner = await ModelRunner.load(fixturePath('tiny-llama'), { numBlocks: 128, blockSize, intraOpNumThreads: 1 });
  });
  afterAll(() => runner.release());

  it('gives a 700-token prompt cut into runs of 256 the logits of one run, every row and the last', async () => {
    const prompt = Array.from({ length: 700 }, (_, index) => (index * 7919 + 5) % 32_000);
    const table = (start: number) => Array.from({ length: 44 }, (_, index) => start + index);
    const whole = await executeInAttentionGroups([{ tokenIds: prompt, numComputedTokens: 0, blockTable: table(0), logits: 'all' }], (group) => runner.execute(group), Infinity);
    const cut = await runner.execute([
      { tokenIds: prompt, numComputedTokens: 0, blockTable: table(44), logits: 'all' },
      { tokenIds: prompt.slice(0, 300), numComputedTokens: 0, blockTable: table(88) },
    ]);
    expect(cut.logitsRowStart[1]).toBe(700);
    expect(maxDifference(cut.logits.subarray(0, 700 * cut.vocabSize), whole.logits)).toBeLessThan(1e-4);
    expect(maxDifference(cut.logits.subarray(700 * cut.vocabSize), whole.logits.subarray(299 * cut.vocabSize, 300 * cut.vocabSize))).toBeLessThan(1e-4);
  });

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

describe('runTokenCap', () => {
  it('lowers the 256-token cap in steps of 32 until a run returns at most 16 MiB of keys and values', () => {
    // SmolLM2-135M: 46,080 bytes of keys and values per token.
    expect(runTokenCap({ numLayers: 30, numKvHeads: 3, headDim: 64 })).toBe(256);
    // Qwen3-0.6B: 229,376 bytes per token, 73 tokens to 16 MiB.
    expect(runTokenCap({ numLayers: 28, numKvHeads: 8, headDim: 128 })).toBe(64);
    // A model too wide for 32 tokens still runs 32 at a time.
    expect(runTokenCap({ numLayers: 80, numKvHeads: 64, headDim: 128 })).toBe(32);
  });
});

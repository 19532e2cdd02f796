import { decodeFloat32Base64, fixturePath, readReference } from '@pagoda/fixtures';
import type { CheckpointName } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelRunner } from '../index';
import { blockAllocator, expectBatchedGreedyReference, logitsRow, maxDifference } from '../test-logits';

const blockSize = 16;
const numBlocks = 256;



function logSumExp(values: Float32Array): number {
  let max = -Infinity;
  for (const value of values) max = Math.max(max, value);
  let sum = 0;
  for (const value of values) sum += Math.exp(value - max);
  return max + Math.log(sum);
}

function topIds(values: Float32Array, count: number): number[] {
  const ids: number[] = [];
  for (let id = 0; id < values.length; id += 1) {
    if (ids.length === count && values[id]! <= values[ids[count - 1]!]!) continue;
    let insertAt = ids.length;
    while (insertAt > 0 && values[ids[insertAt - 1]!]! < values[id]!) insertAt -= 1;
    ids.splice(insertAt, 0, id);
    if (ids.length > count) ids.pop();
  }
  return ids;
}

describe.each<CheckpointName>(['tiny-llama', 'tiny-qwen2', 'tiny-qwen3'])('ModelRunner on %s', (name) => {
  const reference = readReference(name);
  let runner: ModelRunner;
  let allocate: (numTokens: number) => number[];
  /** Each prompt's logits at every position from one prefill run of that prompt alone. */
  const singleRunLogits: Float32Array[] = [];
  const worst = { prefillLogit: 0, lse: 0, lastLogits: 0, packed: 0, chunked: 0 };

  beforeAll(async () => {
    runner = await ModelRunner.load(fixturePath(name), { numBlocks, blockSize, intraOpNumThreads: 1 });
    allocate = blockAllocator(numBlocks, blockSize, 97);
    for (const prompt of reference.prompts) {
      const output = await runner.execute([
        { tokenIds: prompt.ids, numComputedTokens: 0, blockTable: allocate(prompt.ids.length), logits: 'all' },
      ]);
      singleRunLogits.push(output.logits);
    }
  });

  afterAll(async () => {
    console.info(`${name}: largest differences`, worst);
    await runner.release();
  });

  it('matches transformers at every prefill position of every prompt: top-5 ids as a set, logits and lse within 1e-3', () => {
    const vocabSize = runner.config.vocabSize;
    reference.prompts.forEach((prompt, promptIndex) => {
      prompt.prefill.forEach((expected, position) => {
        const logits = logitsRow(singleRunLogits[promptIndex]!, vocabSize, position);
        expected.ids.forEach((id, rank) => {
          const difference = Math.abs(logits[id]! - expected.logits[rank]!);
          worst.prefillLogit = Math.max(worst.prefillLogit, difference);
          expect(difference, `prompt ${promptIndex} position ${position} id ${id}`).toBeLessThan(1e-3);
        });
        const ours = topIds(logits, 6);
        const fifthAndSixthTie = Math.abs(logits[ours[4]!]! - logits[ours[5]!]!) < 1e-4;
        if (!fifthAndSixthTie) expect(new Set(ours.slice(0, 5))).toEqual(new Set(expected.ids));
        const lseDifference = Math.abs(logSumExp(logits) - expected.lse);
        worst.lse = Math.max(worst.lse, lseDifference);
        expect(lseDifference, `prompt ${promptIndex} position ${position} lse`).toBeLessThan(1e-3);
      });
    });
  });

  it("matches all of transformers' last-position logits of the first prompt within 1e-3", () => {
    const prompt = reference.prompts[0]!;
    const expected = decodeFloat32Base64(prompt.last_logits_f32_b64!);
    const vocabSize = runner.config.vocabSize;
    const ours = logitsRow(singleRunLogits[0]!, vocabSize, prompt.ids.length - 1);
    worst.lastLogits = maxDifference(ours, expected);
    expect(worst.lastLogits).toBeLessThan(1e-3);
  });

  it('reproduces the 24 greedy reference tokens of every prompt, decoding all prompts batched through the paged cache', async () => {
    await expectBatchedGreedyReference(runner, reference, allocate);
  });

  it('gives the logits of one prompt at a time, within 1e-4, when the three prompts are packed into one run', async () => {
    const output = await runner.execute(
      reference.prompts.map((prompt) => ({
        tokenIds: prompt.ids,
        numComputedTokens: 0,
        blockTable: allocate(prompt.ids.length),
        logits: 'all' as const,
      })),
    );
    const vocabSize = output.vocabSize;
    reference.prompts.forEach((prompt, index) => {
      const start = output.logitsRowStart[index]!;
      expect(output.logitsRowStart[index + 1]! - start).toBe(prompt.ids.length);
      const packed = output.logits.subarray(start * vocabSize, (start + prompt.ids.length) * vocabSize);
      const difference = maxDifference(packed, singleRunLogits[index]!);
      worst.packed = Math.max(worst.packed, difference);
      expect(difference, `prompt ${index}`).toBeLessThan(1e-4);
    });
  });

  it.each([7, 16, 64])(
    'gives the logits of one run, within 1e-4, when the long prompt is cut into chunks of %i tokens',
    async (chunkSize) => {
      const promptIndex = reference.prompts.length - 1;
      const prompt = reference.prompts[promptIndex]!.ids;
      const blockTable = allocate(prompt.length);
      const vocabSize = runner.config.vocabSize;
      for (let start = 0; start < prompt.length; start += chunkSize) {
        const chunk = prompt.slice(start, start + chunkSize);
        const output = await runner.execute([{ tokenIds: chunk, numComputedTokens: start, blockTable, logits: 'all' }]);
        const expected = singleRunLogits[promptIndex]!.subarray(start * vocabSize, (start + chunk.length) * vocabSize);
        const difference = maxDifference(output.logits, expected);
        worst.chunked = Math.max(worst.chunked, difference);
        expect(difference, `chunk at ${start}`).toBeLessThan(1e-4);
      }
    },
  );
});

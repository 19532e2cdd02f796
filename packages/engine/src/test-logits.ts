import type { Reference } from '@pagoda/fixtures';
import { argmax } from '@pagoda/sampling';
import { expect } from 'vitest';
import type { ModelExecutor } from './core/engine-core';

/** The index of the largest value (the first one among equals): the sampler's own. */
export { argmax };

/** The largest absolute difference between two rows of the same length. */
export function maxDifference(left: Float32Array, right: Float32Array): number {
  expect(left.length).toBe(right.length);
  let max = 0;
  for (let index = 0; index < left.length; index += 1) max = Math.max(max, Math.abs(left[index]! - right[index]!));
  return max;
}

/** Row `index` of a `[rows, vocabSize]` logits array. */
export function logitsRow(logits: Float32Array, vocabSize: number, index: number): Float32Array {
  return logits.subarray(index * vocabSize, (index + 1) * vocabSize);
}

/**
 * Hands out blocks of a pool in a scrambled order (block `i · stride mod numBlocks`), so block tables are not the
 * identity and paging is really exercised.
 */
export function blockAllocator(numBlocks: number, blockSize: number, stride: number): (numTokens: number) => number[] {
  const order = Array.from({ length: numBlocks }, (_, index) => (index * stride) % numBlocks);
  let next = 0;
  return (numTokens) => {
    const count = Math.ceil(numTokens / blockSize);
    const blocks = order.slice(next, next + count);
    next += count;
    if (blocks.length < count) throw new Error('test ran out of blocks');
    return blocks;
  };
}

/**
 * Decodes the reference's 24 greedy steps for all its prompts at once, every step one batched run through the
 * runner's paged cache, and checks each prompt's tokens against transformers' up to the first step whose top-2
 * margin is under 1e-3 (past it, float noise may pick either token).
 */
export async function expectBatchedGreedyReference(
  runner: ModelExecutor,
  reference: Reference,
  allocate: (numTokens: number) => number[],
): Promise<void> {
  const states = reference.prompts.map((prompt) => ({
    blockTable: allocate(prompt.ids.length + 24),
    numComputedTokens: 0,
    next: prompt.ids as readonly number[],
    generated: [] as number[],
  }));
  for (let step = 0; step < 24; step += 1) {
    const output = await runner.execute(
      states.map((state) => ({ tokenIds: state.next, numComputedTokens: state.numComputedTokens, blockTable: state.blockTable })),
    );
    states.forEach((state, index) => {
      const token = argmax(logitsRow(output.logits, output.vocabSize, output.logitsRowStart[index]!));
      state.numComputedTokens += state.next.length;
      state.generated.push(token);
      state.next = [token];
    });
  }
  reference.prompts.forEach((prompt, index) => {
    const firstTie = prompt.greedy.steps.findIndex((step) => step.margin < 1e-3);
    const comparable = firstTie === -1 ? 24 : firstTie + 1;
    expect(states[index]!.generated.slice(0, comparable)).toEqual(prompt.greedy.ids.slice(0, comparable));
  });
}

/**
 * The logits a runner gives at each of a reference prompt's 24 greedy steps when fed the reference's own tokens
 * (teacher forcing): the prompt's last row, then one row per greedy token but the last, from a second run over the
 * cached prompt. Row `t` predicts greedy token `t`.
 */
export async function teacherForcedLogits(
  runner: ModelExecutor,
  prompt: Reference['prompts'][number],
  allocate: (numTokens: number) => number[],
): Promise<{ rows: Float32Array[]; vocabSize: number }> {
  const blockTable = allocate(prompt.ids.length + prompt.greedy.ids.length);
  const first = await runner.execute([{ tokenIds: prompt.ids, numComputedTokens: 0, blockTable }]);
  const rest = await runner.execute([
    { tokenIds: prompt.greedy.ids.slice(0, -1), numComputedTokens: prompt.ids.length, blockTable, logits: 'all' },
  ]);
  const rows = [logitsRow(first.logits, first.vocabSize, 0).slice()];
  for (let step = 0; step < prompt.greedy.ids.length - 1; step += 1) rows.push(logitsRow(rest.logits, rest.vocabSize, step).slice());
  return { rows, vocabSize: first.vocabSize };
}

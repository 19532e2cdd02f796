import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attentionGroups } from './attention-groups';
import { ModelRunner } from './model-runner';
import { parseModelConfig } from '../model/model-config';
import { dummyWeights } from '../model/model-weights';
import type { ModelRunnerOutput } from '../model-step';
import { blockAllocator, logitsRow, maxDifference } from '../test-logits';

// The CPU attention reads cached keys and values block by block through the block tables, and the step's own keys
// apart (block-attention.ts). One run over a whole sequence uses only the second path; decoding the same sequence
// through the cache uses the first for everything but the newest token. So the two must agree at every position.

const blockSize = 8;
const numBlocks = 512;
const vocabSize = 64;

const base = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: vocabSize,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 1024,
  rope_theta: 10000,
};

const qwen3 = { ...base, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', head_dim: 16 };

/**
 * Shapes and RoPE types the attention must serve. Dynamic RoPE is left out: its frequencies follow the longest
 * sequence of each batch, so keys cached by an earlier, shorter batch legitimately differ from one whole run.
 */
const configs: Array<[string, Record<string, unknown>]> = [
  ['Llama, default RoPE', base],
  ['linear RoPE', { ...base, rope_scaling: { rope_type: 'linear', factor: 4 } }],
  ['llama3 RoPE', { ...base, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }],
  ['YaRN RoPE', { ...base, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 128 } }],
  ['Qwen2: q/k/v biases', { ...base, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }],
  ['Qwen3: q/k norms, head_dim 16 with hidden 32 and 4 heads', qwen3],
  ['one KV head for all query heads', { ...base, num_key_value_heads: 1 }],
  ['as many KV heads as query heads', { ...base, num_key_value_heads: 4 }],
  ['a sliding window of 40 on the first layer, full attention on the second', { ...base, sliding_window: 40, layer_types: ['sliding_attention', 'full_attention'] }],
];

/** Token ids of a sequence: a fixed pseudo-random walk through the vocabulary. */
function sequence(length: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length }, () => (state = (state * 1103515245 + 12345) % 2 ** 31) % vocabSize);
}

/** Request `index`'s rows of a step's logits. */
function rowsOf(output: ModelRunnerOutput, index: number): Float32Array {
  return output.logits.subarray(output.logitsRowStart[index]! * vocabSize, output.logitsRowStart[index + 1]! * vocabSize);
}

describe.each(configs)('attention over the paged cache: %s', (_name, json) => {
  const config = parseModelConfig(json);
  let runner: ModelRunner;
  // Block i · 97 mod 512: every table's neighbouring blocks lie far apart in the pools.
  let allocate: (numTokens: number) => number[];
  beforeAll(async () => {
    runner = await ModelRunner.create(config, dummyWeights(config, 5), { numBlocks, blockSize, intraOpNumThreads: 1 });
    allocate = blockAllocator(numBlocks, blockSize, 97);
  });
  afterAll(async () => {
    await runner.release();
  });

  it('gives one run’s logits at every position of a 600-token sequence cut into prompt chunks and then decoded token by token, in scattered blocks', async () => {
    const tokens = sequence(600, 7);
    const whole = await runner.execute([{ tokenIds: tokens, numComputedTokens: 0, blockTable: allocate(tokens.length), logits: 'all' }]);
    const blockTable = allocate(tokens.length);
    const expectRows = (output: ModelRunnerOutput, start: number, count: number) => {
      const difference = maxDifference(output.logits, whole.logits.subarray(start * vocabSize, (start + count) * vocabSize));
      expect(difference, `positions ${start}..${start + count - 1}`).toBeLessThan(1e-4);
    };
    for (const [start, end] of [[0, 300], [300, 301], [301, 560]] as const) {
      expectRows(await runner.execute([{ tokenIds: tokens.slice(start, end), numComputedTokens: start, blockTable, logits: 'all' }]), start, end - start);
    }
    for (let position = 560; position < tokens.length; position += 1) {
      expectRows(await runner.execute([{ tokenIds: [tokens[position]!], numComputedTokens: position, blockTable }]), position, 1);
    }
  });
});

describe('attention over the paged cache in mixed batches', () => {
  const config = parseModelConfig(base);
  let runner: ModelRunner;
  let allocate: (numTokens: number) => number[];
  beforeAll(async () => {
    runner = await ModelRunner.create(config, dummyWeights(config, 6), { numBlocks, blockSize, intraOpNumThreads: 1 });
    allocate = blockAllocator(numBlocks, blockSize, 89);
  });
  afterAll(async () => {
    await runner.release();
  });

  /** Runs `tokens` whole in fresh blocks and returns every position's logits. */
  const alone = async (tokens: readonly number[]): Promise<Float32Array> =>
    (await runner.execute([{ tokenIds: tokens, numComputedTokens: 0, blockTable: allocate(tokens.length), logits: 'all' }])).logits;

  it('gives a long decode, a chunk over its own cached context and a new prompt, run in one step, their logits of running alone', async () => {
    const decoding = sequence(640, 11);
    const chunked = sequence(83, 12);
    const fresh = sequence(30, 13);
    const [decodingAlone, chunkedAlone, freshAlone] = [await alone(decoding), await alone(chunked), await alone(fresh)];
    const decodingTable = allocate(decoding.length);
    const chunkedTable = allocate(chunked.length);
    await runner.execute([{ tokenIds: decoding.slice(0, -1), numComputedTokens: 0, blockTable: decodingTable, logits: 'none' }]);
    await runner.execute([{ tokenIds: chunked.slice(0, 53), numComputedTokens: 0, blockTable: chunkedTable, logits: 'none' }]);
    const requests = [
      { tokenIds: decoding.slice(-1), numComputedTokens: decoding.length - 1, blockTable: decodingTable },
      { tokenIds: chunked.slice(53), numComputedTokens: 53, blockTable: chunkedTable, logits: 'all' as const },
      { tokenIds: fresh, numComputedTokens: 0, blockTable: allocate(fresh.length), logits: 'all' as const },
    ];
    expect(attentionGroups(requests), 'the step runs as one session run').toBeUndefined();
    const output = await runner.execute(requests);
    expect(maxDifference(rowsOf(output, 0), logitsRow(decodingAlone, vocabSize, decoding.length - 1))).toBeLessThan(1e-4);
    expect(maxDifference(rowsOf(output, 1), chunkedAlone.subarray(53 * vocabSize))).toBeLessThan(1e-4);
    expect(maxDifference(rowsOf(output, 2), freshAlone)).toBeLessThan(1e-4);
  });

  it('lets requests that share cached prefix blocks decode side by side, each with its own sequence’s logits', async () => {
    // A 400-token prefix (50 whole blocks) computed once; two requests continue it differently through the same
    // prefix blocks, as prefix caching hands them out.
    const prefix = sequence(400, 21);
    const [first, second] = [[...prefix, ...sequence(30, 22)], [...prefix, ...sequence(45, 23)]];
    const [firstAlone, secondAlone] = [await alone(first), await alone(second)];
    const prefixTable = allocate(prefix.length);
    await runner.execute([{ tokenIds: prefix, numComputedTokens: 0, blockTable: prefixTable, logits: 'none' }]);
    const tables = [[...prefixTable, ...allocate(30)], [...prefixTable, ...allocate(45)]];
    const suffixes = await runner.execute([
      { tokenIds: first.slice(400, -1), numComputedTokens: 400, blockTable: tables[0]!, logits: 'all' },
      { tokenIds: second.slice(400, -1), numComputedTokens: 400, blockTable: tables[1]!, logits: 'all' },
    ]);
    expect(maxDifference(rowsOf(suffixes, 0), firstAlone.subarray(400 * vocabSize, (first.length - 1) * vocabSize))).toBeLessThan(1e-4);
    expect(maxDifference(rowsOf(suffixes, 1), secondAlone.subarray(400 * vocabSize, (second.length - 1) * vocabSize))).toBeLessThan(1e-4);
    const last = await runner.execute([
      { tokenIds: first.slice(-1), numComputedTokens: first.length - 1, blockTable: tables[0]! },
      { tokenIds: second.slice(-1), numComputedTokens: second.length - 1, blockTable: tables[1]! },
    ]);
    expect(maxDifference(rowsOf(last, 0), logitsRow(firstAlone, vocabSize, first.length - 1))).toBeLessThan(1e-4);
    expect(maxDifference(rowsOf(last, 1), logitsRow(secondAlone, vocabSize, second.length - 1))).toBeLessThan(1e-4);
  });
});

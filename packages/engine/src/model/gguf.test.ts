import { fixturePath, readReference } from '@pagoda/fixtures';
import type { CheckpointName } from '@pagoda/fixtures';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineOptionsError } from '../core/engine-options';
import { LLM } from '../core/llm';
import { ModelRunner } from '../cpu/model-runner';
import { GgufError } from '../errors';
import { exportGguf } from '../test/gguf-export';
import { ggufHeader, type GgufValue } from '../test/gguf-writer';
import { encodeGgmlRows } from '../test/ggml-encoders';
import { argmax, blockAllocator, logitsRow, maxDifference } from '../test-logits';
import { ggmlKQuantValues } from './ggml-blocks';
import { ggufWeights, readGgufHeader } from './gguf';
import { loadModelWeights } from './model-loader';
import { loadModelConfig, parseModelConfig } from './model-config';
import { dummyWeights, loadCheckpointWeights } from './model-weights';
import { floatWeight, type ModelWeights, quantizeWeight, type WeightTensor } from './weight-tensor';

const blockSize = 16;
const numBlocks = 128;
let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'pagoda-gguf-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** A fixture checkpoint written as GGUF with its projections at `type`. */
async function fixtureGguf(name: CheckpointName, type: 'F32' | 'Q8_0'): Promise<string> {
  const file = join(directory, `${name}-${type}.gguf`);
  const config = await loadModelConfig(fixturePath(name));
  await exportGguf(config, await loadCheckpointWeights(fixturePath(name), config), file, { type });
  return file;
}

/** The first prompt's prefill logits (all positions) and 24 greedy tokens, decoded one step at a time. */
async function prefillAndGreedy(runner: ModelRunner, name: CheckpointName): Promise<{ prefill: Float32Array[]; greedy: number[][] }> {
  const allocate = blockAllocator(numBlocks, blockSize, 13);
  const prefill: Float32Array[] = [];
  const greedy: number[][] = [];
  for (const prompt of readReference(name).prompts.slice(0, 1)) {
    const blockTable = allocate(prompt.ids.length + 24);
    let output = await runner.execute([{ tokenIds: prompt.ids, numComputedTokens: 0, blockTable, logits: 'all' }]);
    prefill.push(output.logits);
    const tokens = [argmax(logitsRow(output.logits, output.vocabSize, prompt.ids.length - 1))];
    while (tokens.length < 24) {
      output = await runner.execute([{ tokenIds: [tokens.at(-1)!], numComputedTokens: prompt.ids.length + tokens.length - 1, blockTable }]);
      tokens.push(argmax(logitsRow(output.logits, output.vocabSize, 0)));
    }
    greedy.push(tokens);
  }
  return { prefill, greedy };
}

describe.each<CheckpointName>(['tiny-llama', 'tiny-qwen2', 'tiny-qwen3'])('%s written as GGUF', (name) => {
  it("loads at F32 with the config its metadata gives, reproducing the fixture's logits (llama's q/k rows un-permuted)", async () => {
    const file = await fixtureGguf(name, 'F32');
    const checkpointConfig = await loadModelConfig(fixturePath(name));
    const config = await loadModelConfig(file);
    expect({ ...config, architecture: undefined, dtype: undefined, maxPositionEmbeddings: undefined }).toEqual({
      ...checkpointConfig,
      architecture: undefined,
      dtype: undefined,
      maxPositionEmbeddings: undefined,
    });
    const options = { numBlocks, blockSize, intraOpNumThreads: 1 };
    const [fromGguf, fromSafetensors] = await Promise.all([ModelRunner.load(file, options), ModelRunner.load(fixturePath(name), options)]);
    try {
      const [ours, theirs] = [await prefillAndGreedy(fromGguf, name), await prefillAndGreedy(fromSafetensors, name)];
      // The same float32 values through the same graph: the same logits.
      ours.prefill.forEach((logits, index) => expect(maxDifference(logits, theirs.prefill[index]!)).toBe(0));
      const reference = readReference(name).prompts[0]!;
      reference.prefill.forEach((expected, position) => {
        const row = logitsRow(ours.prefill[0]!, config.vocabSize, position);
        expected.ids.forEach((id, rank) => expect(Math.abs(row[id]! - expected.logits[rank]!)).toBeLessThan(1e-3));
      });
    } finally {
      await Promise.all([fromGguf.release(), fromSafetensors.release()]);
    }
  });

  it('loads at Q8_0 as the very blocks int8 quantization makes: the same logits and greedy tokens', async () => {
    const file = await fixtureGguf(name, 'Q8_0');
    const options = { numBlocks, blockSize, intraOpNumThreads: 1, accuracyLevel: 1 };
    const [fromGguf, int8] = await Promise.all([ModelRunner.load(file, options), ModelRunner.load(fixturePath(name), { ...options, quantization: 'int8' })]);
    try {
      const [ours, theirs] = [await prefillAndGreedy(fromGguf, name), await prefillAndGreedy(int8, name)];
      expect(ours.greedy).toEqual(theirs.greedy);
      ours.prefill.forEach((logits, index) => expect(maxDifference(logits, theirs.prefill[index]!)).toBe(0));
      expect(fromGguf.weightBytes).toBe(int8.weightBytes);
    } finally {
      await Promise.all([fromGguf.release(), int8.release()]);
    }
  });
});

describe('K-quant GGUF tensors', () => {
  // Rows of 256 and 512: whole K-quant super-blocks.
  const config = parseModelConfig({
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 512,
    hidden_size: 256,
    intermediate_size: 512,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 256,
  });

  it.each([
    ['Q4_K', 'q4_0'],
    ['Q6_K', 'q8_0'],
  ] as const)('load %s dequantized and re-quantized to %s, as the start-up log warns, computing exactly that', async (type, loaded) => {
    const file = join(directory, `k-quant-${type}.gguf`);
    const weights = dummyWeights(config, 5);
    await exportGguf(config, weights, file, { type, embeddingType: 'Q8_0' });
    const header = await readGgufHeader(file);
    const { conversions } = ggufWeights(header, config);
    expect(conversions.map((conversion) => conversion.tensor)).toContain('blk.0.ffn_down.weight');
    expect(new Set(conversions.map((conversion) => `${conversion.stored}->${conversion.loaded}`))).toEqual(new Set([`${type}->${loaded}`]));
    // What the engine should hold: each projection through the K-quant and back, then quantized to `loaded`.
    const expected = new Map<string, WeightTensor>();
    for (const [hfName, tensor] of weights) {
      if (!/_proj\.weight$/.test(hfName)) {
        expected.set(hfName, hfName === 'model.embed_tokens.weight' || hfName === 'lm_head.weight' ? quantizeWeight(tensor, 'q8_0') : tensor);
        continue;
      }
      const [rows, columns] = tensor.shape as [number, number];
      const values = ggmlKQuantValues(type, encodeGgmlRows(type, (await tensor.read()) as Float32Array, rows, columns), rows * columns);
      expected.set(hfName, quantizeWeight(floatWeight(tensor.shape, values), loaded));
    }
    const options = { numBlocks: 8, blockSize, intraOpNumThreads: 1, accuracyLevel: 1 };
    const [fromGguf, reference] = await Promise.all([ModelRunner.load(file, options), ModelRunner.create(config, expected as ModelWeights, options)]);
    try {
      const request = [{ tokenIds: [5, 300, 17, 41, 511, 2], numComputedTokens: 0, blockTable: [0], logits: 'all' as const }];
      const [ours, theirs] = [await fromGguf.execute(request), await reference.execute(request)];
      expect(maxDifference(ours.logits, theirs.logits)).toBe(0);
    } finally {
      await Promise.all([fromGguf.release(), reference.release()]);
    }
  });
});

describe('GGUF metadata arrays', () => {
  // A vocabulary's arrays: longer than the 4,096 elements the reader keeps, so it steps over them undecoded.
  const longArrays = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', elementType: 'string', values: Array.from({ length: 5000 }, (_, i) => `tökén${i}`) }],
    ['tokenizer.ggml.token_type', { type: 'array', elementType: 'int32', values: Array.from({ length: 5000 }, (_, i) => i % 7) }],
    ['tokenizer.ggml.scores', { type: 'array', elementType: 'float64', values: Array.from({ length: 4097 }, (_, i) => i / 3) }],
    ['general.short', { type: 'array', elementType: 'uint16', values: [1, 2, 3] }],
    ['general.name', { type: 'string', value: 'after the vocabulary' }],
  ]);

  it('long arrays are stepped over and read as empty; the keys after them and short arrays read as written', async () => {
    const file = join(directory, 'long-arrays.gguf');
    await writeFile(file, ggufHeader(longArrays, []).header);
    const { metadata } = await readGgufHeader(file);
    expect(metadata.get('tokenizer.ggml.tokens')).toEqual([]);
    expect(metadata.get('tokenizer.ggml.token_type')).toEqual([]);
    expect(metadata.get('tokenizer.ggml.scores')).toEqual([]);
    expect(metadata.get('general.short')).toEqual([1, 2, 3]);
    expect(metadata.get('general.name')).toBe('after the vocabulary');
  });

  it('a file cut inside a long array: truncated, naming its key', async () => {
    const { header } = ggufHeader(longArrays, []);
    const inside = header.indexOf(Buffer.from('tökén4000'));
    const file = join(directory, 'cut-long-array.gguf');
    await writeFile(file, header.subarray(0, inside + 3));
    const error = await readGgufHeader(file).catch((caught: unknown) => caught as GgufError);
    expect(error).toBeInstanceOf(GgufError);
    expect(error).toMatchObject({ code: 'gguf_file_truncated', key: 'tokenizer.ggml.tokens' });
  });
});

describe('bad GGUF input gets a typed error naming the key or tensor', () => {
  let good: Buffer;
  let goodFile: string;
  beforeAll(async () => {
    goodFile = await fixtureGguf('tiny-llama', 'Q8_0');
    good = await readFile(goodFile);
  });

  async function failure(bytes: Uint8Array, label: string): Promise<GgufError> {
    const file = join(directory, `${label}.gguf`);
    await writeFile(file, bytes);
    const error = await (async () => {
      const config = await loadModelConfig(file);
      const weights = await loadModelWeights(file, config, { onProgress: () => undefined });
      for (const tensor of weights.values()) await tensor.read();
    })().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GgufError);
    return error as GgufError;
  }

  /** The byte offset just past a string's bytes in the header (the key or tensor name, as written). */
  const after = (text: string): number => good.indexOf(Buffer.from(text)) + Buffer.byteLength(text);

  it('a file cut inside its metadata: truncated, naming the key being read', async () => {
    const error = await failure(good.subarray(0, after('llama.attention.head_count_kv') + 2), 'cut-metadata');
    expect(error.code).toBe('gguf_file_truncated');
    expect(error.key).toBe('llama.attention.head_count_kv');
    expect(error.message).toMatch(/ends \(at byte \d+\) inside the value of key llama\.attention\.head_count_kv/);
  });

  it("a file cut inside the tensors' data: truncated, naming the first tensor that runs past the end", async () => {
    const header = await readGgufHeader(goodFile);
    const last = [...header.tensors.values()].reduce((latest, info) => (info.offset > latest.offset ? info : latest));
    const file = join(directory, 'cut-data.gguf');
    await writeFile(file, good);
    await truncate(file, last.offset + 10);
    const error = await readGgufHeader(file).catch((caught: unknown) => caught as GgufError);
    expect(error).toBeInstanceOf(GgufError);
    expect(error).toMatchObject({ code: 'gguf_file_truncated', tensor: last.name });
  });

  it('a tensor of a type Pagoda does not read: named, with the type', async () => {
    // blk.0.attn_q.weight's info: its name, u32 n_dims (2), two u64 dims, then the u32 type; Q8_0 (8) becomes Q4_1 (3).
    const bytes = Buffer.from(good);
    bytes.writeUInt32LE(3, after('blk.0.attn_q.weight') + 4 + 16);
    const error = await failure(bytes, 'q4_1');
    expect(error).toMatchObject({ code: 'gguf_tensor_type_unsupported', tensor: 'blk.0.attn_q.weight' });
    expect(error.message).toContain('is Q4_1');
  });

  it('a tensor whose shape disagrees with the metadata: named, with both shapes', async () => {
    // llama.feed_forward_length (a u32 after its key and its u32 type) from 176 to 160.
    const bytes = Buffer.from(good);
    bytes.writeUInt32LE(160, after('llama.feed_forward_length') + 4);
    const error = await failure(bytes, 'shape');
    expect(error).toMatchObject({ code: 'gguf_tensor_shape', tensor: 'blk.0.ffn_gate.weight', expectedShape: [160, 64], actualShape: [176, 64] });
  });

  it('an architecture Pagoda does not run: named by its key', async () => {
    const bytes = Buffer.from(good);
    const at = good.indexOf(Buffer.from('llama'), after('general.architecture'));
    bytes.write('gemma', at);
    await writeFile(join(directory, 'gemma.gguf'), bytes);
    const refused = await loadModelConfig(join(directory, 'gemma.gguf')).catch((caught: unknown) => caught as GgufError);
    expect(refused).toMatchObject({ code: 'gguf_architecture_unsupported', key: 'general.architecture' });
  });

  it('a GGUF model without a tokenizer folder: the engine option is named', async () => {
    const error = await LLM.create(goodFile, { kvCacheMemory: '16MiB' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(EngineOptionsError);
    expect((error as EngineOptionsError).param).toBe('tokenizer');
    expect((error as Error).message).toContain('--tokenizer DIR');
  });
});

describe('a GGUF model through the LLM class', () => {
  it('serves with --tokenizer: the reference greedy tokens at F32, and an int8 start-up log', async () => {
    const file = await fixtureGguf('tiny-qwen3', 'F32');
    const llm = await LLM.create(file, { tokenizer: fixturePath('tiny-qwen3'), kvCacheMemory: '32MiB', maxModelLen: 512, generationConfig: 'vllm' });
    try {
      const reference = readReference('tiny-qwen3').prompts[0]!;
      const [output] = await llm.generate([reference.ids], { temperature: 0, maxTokens: 24, ignoreEos: true });
      expect(output!.outputs[0]!.tokenIds).toEqual(reference.greedy.ids);
      expect(llm.core.startupLog.join('\n')).toMatch(/weights as held .* \(float32\)/);
    } finally {
      await llm.close();
    }
    const quantized = await LLM.create(file, { tokenizer: fixturePath('tiny-qwen3'), kvCacheMemory: '32MiB', maxModelLen: 512, quantization: 'int8' });
    try {
      expect(quantized.core.startupLog.join('\n')).toMatch(/weights as held .* \(q8_0 \+ float32, MatMulNBits accuracy_level 4\)/);
    } finally {
      await quantized.close();
    }
  });
});

import { fixturePath } from '@pagoda/fixtures';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DataType, GraphBuilder, microsoftDomain } from '../model/graph-builder';
import { bfloat16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits, toHalfPrecision } from '../model/half';
import { loadModelConfig } from '../model/model-config';
import { dummyWeights, quantizeModelWeights } from '../model/model-weights';
import type { Quantization } from '../model/quantization';
import { float16ToFloat32 } from '../model/safetensors';
import { ModelFiles, WeightFile } from '../model/weight-file';
import { layoutPagedBatch, metadataEntriesFor } from './paged-batch';
import { buildPagedGraph, type PagedGraphOptions } from './paged-graph';

const { onnx } = onnxProto;

async function decodedGraph(name: 'tiny-qwen3' | 'tiny-llama' | 'tiny-qwen2', options: Partial<PagedGraphOptions> = {}, quantization?: Quantization) {
  const config = await loadModelConfig(fixturePath(name));
  const built = buildPagedGraph(config, quantizeModelWeights(dummyWeights(config, 1), quantization), {
    dtype: 'float16',
    attention: 'paged',
    fusedAttention: true,
    pools: 'initializers',
    numBlocks: 4,
    blockSize: 16,
    ropeRows: 64,
    ...options,
  });
  return { config, built, model: onnx.ModelProto.decode(built.model) };
}

const attributes = (node: onnxProto.onnx.INodeProto): Record<string, number> =>
  Object.fromEntries((node.attribute ?? []).map((attribute) => [attribute.name, attribute.type === onnx.AttributeProto.AttributeType.FLOAT ? attribute.f : Number(attribute.i)]));

describe('the CUDA graph (fused PagedAttention, pools as initializers)', () => {
  it('has one PagedAttention per layer fed packed QKV, the pools, the batch inputs, rotary caches, q/k norms and the metadata', async () => {
    const { config, model } = await decodedGraph('tiny-qwen3');
    const paged = model.graph!.node!.filter((node) => node.opType === 'PagedAttention');
    expect(paged).toHaveLength(config.numLayers);
    paged.forEach((node, layer) => {
      expect(node.domain).toBe('com.microsoft');
      expect(node.input).toEqual([
        `layers.${layer}.qkv`, '', '', `key_cache.${layer}`, `value_cache.${layer}`,
        'cumulative_sequence_length', 'past_seqlens', 'block_table', 'cos_cache', 'sin_cache', '', '',
        `model.layers.${layer}.self_attn.q_norm.weight`, `model.layers.${layer}.self_attn.k_norm.weight`, '', '', 'attention_metadata',
      ]);
      expect(attributes(node)).toMatchObject({ num_heads: 4, kv_num_heads: 2, do_rotary: 1, rotary_interleaved: 0 });
      expect(attributes(node).qk_norm_epsilon).toBeCloseTo(config.rmsNormEps, 12);
    });
    expect(model.opsetImport!.map((opset) => [opset.domain, Number(opset.version)])).toContainEqual(['com.microsoft', 1]);
  });

  it('declares each pool as a zero float16 initializer [numBlocks, blockSize, kvHeads, headDim], not an input', async () => {
    const { config, built, model } = await decodedGraph('tiny-qwen3');
    const pools = model.graph!.initializer!.filter((tensor) => /^(key|value)_cache\.\d+$/.test(tensor.name!));
    expect(pools).toHaveLength(2 * config.numLayers);
    for (const pool of pools) {
      expect(pool.dataType).toBe(onnx.TensorProto.DataType.FLOAT16);
      expect(pool.dims!.map(Number)).toEqual([4, 16, 2, 32]);
    }
    expect(model.graph!.input!.map((input) => input.name)).not.toContain('key_cache.0');
    expect(built.poolBytes).toBe(2 * config.numLayers * 4 * 16 * 2 * 32 * 2);
    // Zero pools are holes of the weight file: placed, never produced.
    const poolEntry = built.weights.entry('key_cache.0@4')!;
    expect(poolEntry.byteLength).toBe(4 * 16 * 2 * 32 * 2);
    const directory = await mkdtemp(join(tmpdir(), 'pagoda-weight-file-'));
    onTestFinished(() => rm(directory, { recursive: true, force: true }));
    await built.weights.write(join(directory, WeightFile.fileName));
    const bytes = await readFile(join(directory, WeightFile.fileName));
    expect(bytes.subarray(poolEntry.offset, poolEntry.offset + poolEntry.byteLength).every((byte) => byte === 0)).toBe(true);
  });

  it('stores weights in float16 (q/k/v and gate/up packed), and returns float32 logits of the sampled rows only', async () => {
    const { config, built, model } = await decodedGraph('tiny-llama');
    const initializer = (name: string) => model.graph!.initializer!.find((tensor) => tensor.name === name)!;
    const qkv = initializer('model.layers.0.self_attn.qkv_proj.weight');
    expect(qkv.dataType).toBe(onnx.TensorProto.DataType.FLOAT16);
    expect(qkv.dims!.map(Number)).toEqual([(config.numHeads + 2 * config.numKvHeads) * config.headDim, config.hiddenSize]);
    expect(initializer('model.layers.0.mlp.gate_up_proj.weight').dims!.map(Number)).toEqual([2 * config.intermediateSize, config.hiddenSize]);
    expect(model.graph!.output!.map((output) => [output.name, output.type!.tensorType!.elemType])).toEqual([['logits', onnx.TensorProto.DataType.FLOAT]]);
    const gather = model.graph!.node!.find((node) => node.output![0] === 'sampled_hidden')!;
    expect(gather.input![1]).toBe('logits_index');
    // The weights as stored: every checkpoint tensor once, two bytes a value.
    const parameters = [...dummyWeights(config, 1).values()].reduce((sum, tensor) => sum + tensor.shape.reduce((product, dim) => product * dim, 1), 0);
    expect(built.weightBytes).toBe(parameters * 2);
  });
});

describe('the WebGPU graph (rotary outside PagedAttention, pools as inputs)', () => {
  it('rotates and norms q/k with standard operators and feeds PagedAttention separate q, k, v and the pool inputs', async () => {
    const { config, model } = await decodedGraph('tiny-qwen3', { fusedAttention: false, pools: 'inputs' });
    const paged = model.graph!.node!.filter((node) => node.opType === 'PagedAttention');
    expect(paged[0]!.input!.slice(0, 10)).toEqual(['layers.0.q_rope', 'layers.0.k_rope', 'layers.0.v', 'key_cache.0', 'value_cache.0', 'cumulative_sequence_length', 'past_seqlens', 'block_table', '', '']);
    expect(attributes(paged[0]!).do_rotary).toBeUndefined();
    // Rotary from plain operators: the cache rows gathered once by position, then per layer Split/Mul/Sub/Add/Concat.
    expect(model.graph!.node!.filter((node) => node.opType === 'RotaryEmbedding')).toHaveLength(0);
    expect(model.graph!.node!.filter((node) => node.opType === 'Gather' && node.input![1] === 'position_ids')).toHaveLength(2);
    expect(model.graph!.node!.filter((node) => node.opType === 'SimplifiedLayerNormalization' && /q_rope|k_rope/.test(node.output![0]!))).toHaveLength(2 * config.numLayers);
    const inputs = model.graph!.input!.map((input) => input.name);
    expect(inputs).toEqual(expect.arrayContaining(['position_ids', 'key_cache.0', 'value_cache.2']));
    expect(model.graph!.initializer!.some((tensor) => tensor.name === 'key_cache.0')).toBe(false);
  });
});

describe("ONNX Runtime's own checks of the GPU graphs (schemas, attributes, types, shapes)", () => {
  /**
   * The CPU has no PagedAttention kernel (and few float16 ones), so a CPU session of a GPU graph always fails; what
   * matters is when. A model ONNX Runtime accepts at load fails only later, once its CPU fallback has inserted float
   * casts or found no kernel; a node that breaks an operator's schema fails at load, in the node's own validation.
   * (onnxruntime-node 1.29, the version the lent GPU machine runs, gave the same verdicts on these graphs.)
   */
  const sessionFailure = async (graph: { model: Uint8Array; weights: WeightFile }): Promise<string> => {
    const files = await ModelFiles.create(graph.weights);
    try {
      const session = await ort.InferenceSession.create(await files.writeModel(graph.model), { logSeverityLevel: 4 });
      await session.release();
      return 'created';
    } catch (error) {
      return (error as Error).message;
    } finally {
      await files.remove();
    }
  };
  const passedLoad = /InsertedPrecisionFreeCast|Could not find an implementation for (?!PagedAttention)/;

  it.each([
    ['tiny-qwen3', 'float16', true, undefined],
    ['tiny-qwen3', 'float16', false, undefined],
    ['tiny-llama', 'float16', true, undefined],
    ['tiny-llama', 'bfloat16', true, undefined],
    ['tiny-qwen2', 'float16', false, undefined],
    ['tiny-qwen3', 'float16', true, 'int4'],
    ['tiny-llama', 'float16', true, 'int8'],
    ['tiny-qwen2', 'float16', false, 'int8'],
  ] as const)('accepts the %s graph in %s (fused attention: %s, quantized: %s) at load', async (name, dtype, fusedAttention, quantization) => {
    const { built, model } = await decodedGraph(name, { dtype, fusedAttention, pools: fusedAttention ? 'initializers' : 'inputs' }, quantization);
    if (quantization !== undefined) {
      // MatMulNBits over packed q/k/v and gate/up, GatherBlockQuantized for the embedding; scales in the graph's dtype.
      const ops = model.graph!.node!.map((node) => node.opType);
      expect(ops.filter((op) => op === 'MatMulNBits').length).toBeGreaterThanOrEqual(3 * 2);
      expect(ops).toContain('GatherBlockQuantized');
      const scales = model.graph!.initializer!.find((tensor) => tensor.name === 'model.layers.0.self_attn.qkv_proj.weight.scales')!;
      expect(scales.dataType).toBe(onnx.TensorProto.DataType.FLOAT16);
    }
    const failure = await sessionFailure(built);
    expect(failure).toMatch(passedLoad);
    expect(failure).not.toMatch(/In Node, \(/);
  });

  it('refuses, at load, a PagedAttention node that breaks the schema (the check can fail)', async () => {
    const graph = new GraphBuilder(new Map());
    for (const input of ['q', 'k', 'v']) graph.input(input, DataType.FLOAT16, ['n', 64]);
    for (const input of ['key_cache', 'value_cache']) graph.input(input, DataType.FLOAT16, [4, 16, 2, 32]);
    for (const input of ['cumulative_sequence_length', 'past_seqlens']) graph.input(input, DataType.INT32, ['b']);
    graph.input('block_table', DataType.INT32, ['b', 'm']);
    const inputs = ['q', 'k', 'v', 'key_cache', 'value_cache', 'cumulative_sequence_length', 'past_seqlens', 'block_table'];
    graph.node('PagedAttention', inputs, 'out', { num_heads: 2, kv_num_heads: 2, rotary_dim: 32 }, microsoftDomain);
    graph.output('out', DataType.FLOAT16, ['n', 64]);
    expect(await sessionFailure(graph.finish())).toMatch(/In Node, \("out\.node", PagedAttention, "com\.microsoft"/);
  });
});

describe('layoutPagedBatch', () => {
  const context = { blockSize: 16, numBlocks: 10, vocabSize: 100, metadataEntries: 3 as const, positionIds: true };

  it("lays out a mixed step as PagedAttention's inputs", () => {
    const batch = layoutPagedBatch(
      [
        { tokenIds: [5, 6, 7], numComputedTokens: 0, blockTable: [4] },
        { tokenIds: [8], numComputedTokens: 20, blockTable: [2, 9, 3] },
        { tokenIds: [1, 2], numComputedTokens: 15, blockTable: [7, 1], logits: 'all' },
      ],
      context,
    );
    const data = (name: string) => Array.from(batch.feeds[name]!.data as Int32Array, Number);
    expect(data('input_ids')).toEqual([5, 6, 7, 8, 1, 2]);
    expect(data('cumulative_sequence_length')).toEqual([0, 3, 4, 6]);
    expect(data('past_seqlens')).toEqual([0, 20, 15]);
    // Rows are as wide as the longest sequence's blocks (21 tokens: 2); unused entries are block 0.
    expect(batch.feeds.block_table!.dims).toEqual([3, 2]);
    expect(data('block_table')).toEqual([4, 0, 2, 9, 7, 1]);
    expect(data('attention_metadata')).toEqual([3, 21, 21]);
    expect(data('logits_index')).toEqual([2, 3, 4, 5]);
    expect(Array.from(batch.logitsRowStart)).toEqual([0, 1, 2, 4]);
    expect(data('position_ids')).toEqual([0, 1, 2, 20, 15, 16]);
    expect(batch.feeds.position_ids!.dims).toEqual([6]);
  });

  it('computes one logits row, dropped by the runner, when no request samples', () => {
    const batch = layoutPagedBatch([{ tokenIds: [1, 2], numComputedTokens: 0, blockTable: [0], logits: 'none' }], context);
    expect(batch.numLogits).toBe(0);
    expect(Array.from(batch.feeds.logits_index!.data as Int32Array)).toEqual([0]);
    expect(Array.from(batch.logitsRowStart)).toEqual([0, 0]);
  });

  it('sends the two metadata entries ONNX Runtime 1.29 takes, and three from 1.30', () => {
    expect(metadataEntriesFor('1.29.0')).toBe(2);
    expect(metadataEntriesFor('1.30.0')).toBe(3);
    expect(metadataEntriesFor('1.31.1')).toBe(3);
    const batch = layoutPagedBatch([{ tokenIds: [1], numComputedTokens: 3, blockTable: [0] }], { ...context, metadataEntries: 2 });
    expect(Array.from(batch.feeds.attention_metadata!.data as Int32Array)).toEqual([1, 4]);
  });

  it('refuses blocks outside the pool and tokens outside the vocabulary, naming the request', () => {
    expect(() => layoutPagedBatch([{ tokenIds: [1], numComputedTokens: 0, blockTable: [10] }], context)).toThrow(/request 0 has block 10, outside 0..9/);
    expect(() => layoutPagedBatch([{ tokenIds: [100], numComputedTokens: 0, blockTable: [1] }], context)).toThrow(/token id 100, outside 0..99/);
    expect(() => layoutPagedBatch([{ tokenIds: [1], numComputedTokens: 16, blockTable: [1] }], context)).toThrow(/needs 2 blocks for 17 tokens/);
  });
});

describe('float16 and bfloat16 conversion', () => {
  it('rounds to nearest even and handles the edges of float16', () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(float32ToFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(1);
    expect(float32ToFloat16Bits(2 ** -26)).toBe(0);
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  it('keeps every value within half a float16 ulp', () => {
    let seed = 7;
    const values = Float32Array.from({ length: 20_000 }, () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return ((seed / 2 ** 31) - 0.5) * 2 ** ((seed % 40) - 20);
    });
    const halves = toHalfPrecision(values, 'float16');
    values.forEach((value, index) => {
      const back = float16ToFloat32(halves[index]!);
      const exponent = Math.max(Math.floor(Math.log2(Math.abs(value))), -14);
      expect(Math.abs(back - value)).toBeLessThanOrEqual(2 ** (exponent - 11) + 1e-45);
    });
  });

  it('rounds float32 to bfloat16 as PyTorch does', () => {
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(-2.5)).toBe(0xc020);
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(3.140625))).toBe(3.140625);
    // 1 + 2^-8 is halfway between two bfloat16 values: ties to even (1).
    expect(float32ToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
  });
});

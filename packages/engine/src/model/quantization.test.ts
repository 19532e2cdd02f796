import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { startSession } from '../execution-provider';
import { encodeGgmlRows, quantizedToGgml } from '../test/ggml-encoders';
import { EmbeddingTable } from './embedding-table';
import { ggmlBlocksToQuantized, ggmlKQuantValues } from './ggml-blocks';
import { DataType, embeddingNode, GraphBuilder, linearNode } from './graph-builder';
import { float16ToFloat32, float32ToFloat16Bits } from './half';
import {
  concatQuantizedRows,
  dequantizeRows,
  type QuantizedFormat,
  quantizedColumns,
  quantizedRows,
  quantizeRows,
} from './quantization';
import { ModelFiles } from './weight-file';
import { floatWeight, quantizeWeight, quantizedWeight, weightColumns, type WeightTensor } from './weight-tensor';

/** ggml's own quantizers and dequantizers on 512 values (see the file's `script`): the oracle for the formats. */
const reference = JSON.parse(readFileSync(new URL('./ggml-reference.json', import.meta.url), 'utf8')) as {
  values_f32_b64: string;
  types: Record<'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q5_K' | 'Q6_K', { blocks_b64: string; dequantized_f32_b64: string }>;
};
const bytes = (base64: string): Uint8Array => new Uint8Array(Buffer.from(base64, 'base64'));
const floats = (base64: string): Float32Array => new Float32Array(bytes(base64).buffer);
const values = floats(reference.values_f32_b64);
const rows = 2;
const columns = 256;

function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31 - 0.5;
  };
}

describe("quantization against ggml's own reference quantizers", () => {
  it.each(['Q8_0', 'Q4_0'] as const)("quantizes to the very %s blocks ggml's quantize_row_*_ref writes, ties and signs included", (type) => {
    const blocks = quantizeRows(values, rows, columns, type === 'Q8_0' ? 'q8_0' : 'q4_0');
    expect(Buffer.from(quantizedToGgml(blocks)).toString('base64')).toBe(reference.types[type].blocks_b64);
  });

  it.each(['Q8_0', 'Q4_0'] as const)("repacks ggml's %s blocks into MatMulNBits' layout losslessly: the values ggml dequantizes", (type) => {
    const repacked = ggmlBlocksToQuantized(type, bytes(reference.types[type].blocks_b64), rows, columns);
    expect(dequantizeRows(repacked)).toEqual(floats(reference.types[type].dequantized_f32_b64));
  });

  it.each(['Q4_K', 'Q5_K', 'Q6_K'] as const)("decodes ggml's %s blocks to the values ggml's dequantize_row_* gives, bit for bit", (type) => {
    expect(ggmlKQuantValues(type, bytes(reference.types[type].blocks_b64), rows * columns)).toEqual(floats(reference.types[type].dequantized_f32_b64));
  });

  it.each([
    ['Q4_K', 0.15],
    ['Q5_K', 0.08],
    ['Q6_K', 0.04],
  ] as const)('encodes %s blocks that decode near the values (the test files of the dequantize path)', (type, bound) => {
    const decoded = ggmlKQuantValues(type, encodeGgmlRows(type, values, rows, columns), rows * columns);
    let error = 0;
    let energy = 0;
    for (let index = 0; index < values.length; index += 1) {
      error += (decoded[index]! - values[index]!) ** 2;
      energy += values[index]! ** 2;
    }
    // Relative RMS error; ggml's own encoders reach about 0.09, 0.05 and 0.02 on these values.
    expect(Math.sqrt(error / energy)).toBeLessThan(bound);
  });
});

describe('quantized blocks', () => {
  const matrix = Float32Array.from({ length: 6 * 96 }, random(3));

  it('keep scales that are float16 values, and dequantize within about half a step of each value', () => {
    for (const format of ['q8_0', 'q4_0'] as const) {
      const blocks = quantizeRows(matrix, 6, 96, format);
      const restored = dequantizeRows(blocks);
      for (let index = 0; index < matrix.length; index += 1) {
        // Half a step (q4_0: a whole one at the clamped top code), plus the scale's float16 rounding over 127 steps.
        const scale = Math.abs(blocks.scales[Math.floor(index / 32)]!);
        expect(Math.abs(restored[index]! - matrix[index]!)).toBeLessThanOrEqual(scale * ((format === 'q8_0' ? 0.5 : 1) + 127 * 2 ** -11));
      }
      expect([...blocks.scales].every((scale) => float16ToFloat32(float32ToFloat16Bits(scale)) === scale)).toBe(true);
    }
  });

  it('slice by rows and by block-aligned columns, and stack by rows, as the whole matrix quantized', () => {
    const whole = quantizeRows(matrix, 6, 96, 'q4_0');
    const dequantized = dequantizeRows(whole);
    expect(dequantizeRows(quantizedRows(whole, 2, 5))).toEqual(dequantized.subarray(2 * 96, 5 * 96));
    const shard = dequantizeRows(quantizedColumns(whole, 32, 96));
    for (let row = 0; row < 6; row += 1) expect(shard.subarray(row * 64, row * 64 + 64)).toEqual(dequantized.subarray(row * 96 + 32, row * 96 + 96));
    expect(() => quantizedColumns(whole, 16, 96)).toThrow(/block boundaries/);
    expect(dequantizeRows(concatQuantizedRows([quantizedRows(whole, 0, 2), quantizedRows(whole, 2, 6)]))).toEqual(dequantized);
  });

  it('are made a bounded number of rows at a time, equal to one whole quantization', async () => {
    const tensor = quantizeWeight(floatWeight([6, 96], matrix), 'q8_0');
    expect(tensor.format).toBe('q8_0');
    const blocks = (await tensor.read()) as ReturnType<typeof quantizeRows>;
    expect(blocks.codes).toEqual(quantizeRows(matrix, 6, 96, 'q8_0').codes);
    const shard = (await weightColumns(tensor, { start: 32, end: 64 }).read()) as ReturnType<typeof quantizeRows>;
    expect(dequantizeRows(shard)).toEqual(dequantizeRows(quantizedColumns(blocks, 32, 64)));
  });

  it('leave a weight float32 when its rows are not whole blocks (as llama.cpp keeps them wider)', () => {
    expect(quantizeWeight(floatWeight([4, 176], new Float32Array(4 * 176)), 'q4_0').format).toBe('float32');
    expect(quantizeWeight(floatWeight([176], new Float32Array(176)), 'q8_0').format).toBe('float32');
  });
});

describe("ONNX Runtime's MatMulNBits and GatherBlockQuantized on the engine's blocks", () => {
  /** A session computing `input · weightᵀ` and the embedding rows `ids` of one quantized weight. */
  async function quantizedSession(format: QuantizedFormat, weight: Float32Array, outputs: number, inputs: number, accuracyLevel: number) {
    const blocks = quantizeRows(weight, outputs, inputs, format);
    const weights = new Map<string, WeightTensor>([
      ['w', quantizedWeight(blocks)],
      ['bias', floatWeight([outputs], Float32Array.from({ length: outputs }, (_, index) => index / 10))],
    ]);
    const graph = new GraphBuilder(weights);
    graph.input('x', DataType.FLOAT, ['m', inputs]);
    graph.input('ids', DataType.INT32, ['n']);
    graph.output(linearNode(graph, 'x', 'w', 'y', { bias: 'bias', accuracyLevel }), DataType.FLOAT, ['m', outputs]);
    // The device graph's embedding (over the head's initializers) and the CPU runners' (rows read from the file).
    graph.output(embeddingNode(graph, 'w', 'ids', 'rows'), DataType.FLOAT, ['n', inputs]);
    const rows = graph.placeRows('w');
    const built = graph.finish();
    const files = await ModelFiles.create(built.weights);
    try {
      const session = await startSession(built, 'cpu', { intraOpNumThreads: 1, files });
      return { session, table: EmbeddingTable.open(files.weightsPath, rows), dequantized: dequantizeRows(blocks) };
    } finally {
      await files.remove();
    }
  }

  it.each(['q8_0', 'q4_0'] as const)('computes x · Wᵀ + b on %s blocks as float32 math on their values (accuracy_level 1), and embeds their rows', async (format) => {
    const [outputs, inputs, tokens] = [5, 96, 3];
    const next = random(11);
    const weight = Float32Array.from({ length: outputs * inputs }, next);
    const x = Float32Array.from({ length: tokens * inputs }, next);
    const { session, table, dequantized } = await quantizedSession(format, weight, outputs, inputs, 1);
    try {
      const results = await session.run({ x: new ort.Tensor('float32', x, [tokens, inputs]), ids: new ort.Tensor('int32', Int32Array.from([4, 0, 4]), [3]) });
      const y = results.y!.data as Float32Array;
      for (let token = 0; token < tokens; token += 1) {
        for (let output = 0; output < outputs; output += 1) {
          let expected = output / 10;
          for (let index = 0; index < inputs; index += 1) expected += x[token * inputs + index]! * dequantized[output * inputs + index]!;
          expect(Math.abs(y[token * outputs + output]! - expected)).toBeLessThan(1e-5);
        }
      }
      for (const embedded of [results.rows!.data as Float32Array, table.lookup([4, 0, 4])]) {
        expect(embedded.subarray(0, inputs)).toEqual(dequantized.subarray(4 * inputs, 5 * inputs));
        expect(embedded.subarray(inputs, 2 * inputs)).toEqual(dequantized.subarray(0, inputs));
      }
    } finally {
      table.close();
      await session.release();
    }
  });

  it('quantizes activations per block at accuracy_level 4: close to, not equal to, the float32 result', async () => {
    const [outputs, inputs] = [4, 64];
    const next = random(5);
    const weight = Float32Array.from({ length: outputs * inputs }, next);
    const x = Float32Array.from({ length: inputs }, next);
    const exact = await quantizedSession('q8_0', weight, outputs, inputs, 1);
    const approximate = await quantizedSession('q8_0', weight, outputs, inputs, 4);
    try {
      const feeds = { x: new ort.Tensor('float32', x, [1, inputs]), ids: new ort.Tensor('int32', Int32Array.from([0]), [1]) };
      const y1 = (await exact.session.run(feeds)).y!.data as Float32Array;
      const y4 = (await approximate.session.run(feeds)).y!.data as Float32Array;
      const differences = [...y1].map((value, index) => Math.abs(value - y4[index]!));
      expect(Math.max(...differences)).toBeGreaterThan(0);
      expect(Math.max(...differences)).toBeLessThan(0.02);
    } finally {
      exact.table.close();
      approximate.table.close();
      await exact.session.release();
      await approximate.session.release();
    }
  });
});

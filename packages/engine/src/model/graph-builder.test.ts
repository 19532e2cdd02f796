import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { startSession } from '../execution-provider';
import { EmbeddingTable } from './embedding-table';
import { DataType, GraphBuilder, linearNode } from './graph-builder';
import { ModelFiles } from './weight-file';
import { floatWeight, type WeightTensor } from './weight-tensor';

function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
}

describe('a float weight over the Gemm size limit', () => {
  // 1,200 rows of 64 bytes: chunks start on 64 KiB boundaries of the weight file, so 1,024 rows, then 176.
  const [outputs, inputs, tokens] = [1200, 16, 3];
  const next = random(5);
  const weight = Float32Array.from({ length: outputs * inputs }, next);
  const x = Float32Array.from({ length: tokens * inputs }, next);

  async function session(maxWeightBytes: number | undefined) {
    const graph = new GraphBuilder(new Map<string, WeightTensor>([['w', floatWeight([outputs, inputs], weight)]]));
    graph.input('x', DataType.FLOAT, ['m', inputs]);
    const linearOptions = { accuracyLevel: 4, ...(maxWeightBytes === undefined ? {} : { maxWeightBytes }) };
    graph.output(linearNode(graph, 'x', 'w', 'y', linearOptions), DataType.FLOAT, ['m', outputs]);
    // A tied embedding's rows over the same bytes, as the CPU graph places them beside its head.
    const rows = graph.placeRows('w');
    const built = graph.finish();
    const gemms = onnxProto.onnx.ModelProto.decode(built.model).graph!.node!.filter((node) => node.opType === 'Gemm').length;
    const files = await ModelFiles.create(built.weights);
    try {
      const started = await startSession(built, 'cpu', { intraOpNumThreads: 1, files });
      return { session: started, table: EmbeddingTable.open(files.weightsPath, rows), gemms, fileBytes: built.weights.byteLength };
    } finally {
      await files.remove();
    }
  }

  it('runs as one Gemm per row chunk over the one copy of its bytes, and computes what one Gemm does', async () => {
    const whole = await session(undefined);
    const chunked = await session(1);
    try {
      expect(whole.gemms).toBe(1);
      expect(chunked.gemms).toBe(2);
      // The chunks and the embedding's rows read the bytes placed once.
      expect(chunked.fileBytes).toBe(whole.fileBytes);
      expect(chunked.fileBytes).toBe(outputs * inputs * 4);
      const feeds = { x: new ort.Tensor('float32', x, [tokens, inputs]) };
      const expected = await whole.session.run(feeds);
      const actual = await chunked.session.run(feeds);
      const y = actual.y!.data as Float32Array;
      for (let token = 0; token < tokens; token += 1) {
        for (let output = 0; output < outputs; output += 1) {
          let sum = 0;
          for (let index = 0; index < inputs; index += 1) sum += x[token * inputs + index]! * weight[output * inputs + index]!;
          expect(y[token * outputs + output]).toBeCloseTo(sum, 5);
        }
      }
      expect(Array.from(y)).toEqual(Array.from(expected.y!.data as Float32Array));
      expect(Array.from(chunked.table.lookup([1199, 0, 1024]))).toEqual([
        ...weight.subarray(1199 * inputs, 1200 * inputs),
        ...weight.subarray(0, inputs),
        ...weight.subarray(1024 * inputs, 1025 * inputs),
      ]);
      expect(() => chunked.table.lookup([1200])).toThrow(/token id 1200 is outside the embedding's 1200 rows/);
    } finally {
      whole.table.close();
      chunked.table.close();
      await whole.session.release();
      await chunked.session.release();
    }
  });
});

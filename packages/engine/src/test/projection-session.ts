import * as ort from 'onnxruntime-node';
import { startSession } from '../execution-provider';
import { DataType, GraphBuilder, linearNode } from '../model/graph-builder';
import type { QuantizedFormat } from '../model/quantization';
import { floatWeight, type ModelWeights, quantizeWeight, type WeightTensor } from '../model/weight-tensor';

/** What {@link projectionSession} builds. */
export interface ProjectionSessionOptions {
  /** The weight's shape, Hugging Face `[out, in]`. */
  readonly rows: number;
  readonly columns: number;
  readonly format: 'float32' | QuantizedFormat;
  /** Independent weights, each projected from the same input: a model's layers, so the weights leave the caches. */
  readonly copies: number;
  readonly accuracyLevel?: number;
  readonly intraOpNumThreads?: number;
}

/** A session of projections alone, and a way to run it on `m` input rows. */
export interface ProjectionSession {
  /** Runs every copy once on `m` rows; resolves to the run's milliseconds. */
  run(m: number): Promise<number>;
  release(): Promise<void>;
}

/**
 * `copies` projections `x · Wᵀ` over seeded weights, made as the engine's graphs make them (`linearNode`: Gemm for
 * float32, MatMulNBits for q8_0 / q4_0), in a session of their own: for benchmarks of ONNX Runtime's matrix
 * kernels apart from the rest of a model step.
 */
export async function projectionSession(options: ProjectionSessionOptions): Promise<ProjectionSession> {
  const { rows, columns, copies } = options;
  const values = new Float32Array(rows * columns).map((_, index) => Math.sin(index * 0.37) * 0.05);
  const weights = new Map<string, WeightTensor>();
  const graph = new GraphBuilder(weights as ModelWeights);
  graph.input('x', DataType.FLOAT, ['m', columns]);
  for (let copy = 0; copy < copies; copy += 1) {
    const weight = floatWeight([rows, columns], values);
    weights.set(`w${copy}`, options.format === 'float32' ? weight : quantizeWeight(weight, options.format));
    const output = linearNode(graph, 'x', `w${copy}`, `y${copy}`, { accuracyLevel: options.accuracyLevel ?? 4 });
    graph.output(output, DataType.FLOAT, ['m', rows]);
  }
  // startSession writes the model and weight files and removes them once the session has started.
  const session = await startSession(graph.finish(), 'cpu', options.intraOpNumThreads === undefined ? {} : { intraOpNumThreads: options.intraOpNumThreads });
  const inputs = new Map<number, ort.Tensor>();
  return {
    async run(m) {
      let x = inputs.get(m);
      if (x === undefined) {
        x = new ort.Tensor('float32', new Float32Array(m * columns).map((_, index) => Math.cos(index)), [m, columns]);
        inputs.set(m, x);
      }
      const start = performance.now();
      await session.run({ x });
      return performance.now() - start;
    },
    release: () => session.release(),
  };
}

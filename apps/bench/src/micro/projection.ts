// ONNX Runtime's matrix kernels alone, on the projections of a SmolLM2-135M-shaped layer: float32 Gemm and
// MatMulNBits over q8_0 and q4_0 blocks, at 1, 8 and 32 rows (decode streams). 30 independent weights per run, as
// the model's 30 layers, so the weights stream from memory as they do in a step. Per projection: microseconds, the
// GFLOP/s that is, and the GB/s of weight bytes read.
//   micro projection [intraOpThreads] [accuracyLevel]
import { projectionSession } from '@pagoda/engine/test';
import { cpus } from 'node:os';
import { percentile } from '../statistics';

const copies = 30;
const shapes = [
  { name: 'gate/up (3072 × 576)', rows: 3072, columns: 576 },
  { name: 'down (576 × 1536)', rows: 576, columns: 1536 },
] as const;
const formats = ['float32', 'q8_0', 'q4_0'] as const;
const bytesPerWeight: Record<(typeof formats)[number], number> = { float32: 4, q8_0: 34 / 32, q4_0: 18 / 32 };
const rowCounts = [1, 8, 32];
const iterations = 15;

export default async function projectionBenchmark(args: string[]): Promise<object> {
  const intraOpNumThreads = Number(args[0] ?? cpus().length);
  const accuracyLevel = Number(args[1] ?? 4);
  const rows: object[] = [];
  for (const shape of shapes) {
    for (const format of formats) {
      const session = await projectionSession({ ...shape, format, copies, accuracyLevel, intraOpNumThreads });
      try {
        for (const m of rowCounts) {
          for (let warmup = 0; warmup < 3; warmup += 1) await session.run(m);
          const samples: number[] = [];
          for (let index = 0; index < iterations; index += 1) samples.push(await session.run(m));
          // The 20th percentile: the least disturbed runs on a shared machine.
          samples.sort((left, right) => left - right);
          const microseconds = (percentile(samples, 20) / copies) * 1000;
          const median = (percentile(samples, 50) / copies) * 1000;
          const gflops = (2 * m * shape.rows * shape.columns) / (microseconds * 1e3);
          const weightGBps = (shape.rows * shape.columns * bytesPerWeight[format]) / (microseconds * 1e3);
          rows.push({ shape: shape.name, format, m, microseconds, medianMicroseconds: median, gflops, weightGBps });
          console.error(
            `${shape.name.padEnd(22)} ${format.padEnd(8)} m=${String(m).padStart(2)}  ${microseconds.toFixed(1).padStart(7)} µs` +
              `  ${gflops.toFixed(1).padStart(6)} GFLOP/s  ${weightGBps.toFixed(1).padStart(5)} GB/s of weights`,
          );
        }
      } finally {
        await session.release();
      }
    }
  }
  return { copies, intraOpNumThreads, accuracyLevel, iterations, rows };
}

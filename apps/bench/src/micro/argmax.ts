// Greedy sampling's argmax over a vocabulary row, @pagoda/sampling's against the plain one-maximum loop it replaced,
// side by side in one process, their rounds interleaved (this machine is noisy): rows of SmolLM2's (49,152) and
// Qwen's (151,936) vocabularies.
//   micro argmax [rows=128] [rounds=15]
import { Sampler, validateSamplingParams } from '@pagoda/sampling';

function plainArgmax(row: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let index = 0; index < row.length; index += 1) {
    if (row[index]! > bestValue) {
      bestValue = row[index]!;
      best = index;
    }
  }
  return best;
}

export default async function argmaxBenchmark(args: string[]): Promise<object> {
  const rows = Number(args[0] ?? 128);
  const rounds = Number(args[1] ?? 15);
  const points = [];
  for (const vocabSize of [49_152, 151_936]) {
    const logits = Float32Array.from({ length: rows * vocabSize }, (_, index) => Math.sin(index * 12.9898) * 10);
    const params = validateSamplingParams({ temperature: 0 }, { vocabSize, maxLogprobs: 20 });
    const history = { promptTokenIds: [], outputTokenIds: [] };
    const batch = { logits, rows: Array.from({ length: rows }, () => ({ params, history })) };
    const sampler = new Sampler();
    const expected = Array.from({ length: rows }, (_, row) => plainArgmax(logits.subarray(row * vocabSize, (row + 1) * vocabSize)));
    if (Array.from(sampler.sample(batch).tokenIds).join() !== expected.join()) throw new Error('the sampler disagrees with the plain argmax');
    const plainTimes: number[] = [];
    const samplerTimes: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      let start = performance.now();
      for (let row = 0; row < rows; row += 1) plainArgmax(logits.subarray(row * vocabSize, (row + 1) * vocabSize));
      plainTimes.push(((performance.now() - start) * 1000) / rows);
      start = performance.now();
      sampler.sample(batch);
      samplerTimes.push(((performance.now() - start) * 1000) / rows);
    }
    const median = (values: number[]): number => values.sort((left, right) => left - right)[values.length >> 1]!;
    const point = {
      vocabSize,
      rows,
      rounds,
      plainMicrosecondsPerRow: median(plainTimes),
      samplerMicrosecondsPerRow: median(samplerTimes),
      speedup: median(plainTimes) / median(samplerTimes),
    };
    console.log(
      `vocab ${vocabSize}: greedy sampler ${point.samplerMicrosecondsPerRow.toFixed(1)} µs/row, plain argmax ${point.plainMicrosecondsPerRow.toFixed(1)} µs/row (${point.speedup.toFixed(2)}x)`,
    );
    points.push(point);
  }
  return { points };
}

// Softmax over one vocabulary-sized row: the floor under every sampling step.
import { softmax } from '@pagoda/sampling';
import { timeMicroseconds } from './timing';

export default async function softmaxBenchmark(args: string[]): Promise<object> {
  const vocabSize = Number(args[0] ?? 151_936);
  const logits = new Float32Array(vocabSize).map((_, index) => Math.sin(index * 12.9898) * 10);
  const out = new Float32Array(vocabSize);
  return { vocabSize, softmax: timeMicroseconds(() => softmax(logits, out), { iterations: 200 }) };
}

// Tensor and pipeline parallelism on this machine: the SmolLM2-135M-shaped dummy model at 32 concurrent decodes,
// one rank with 2 intra-op threads against tp=3 (SmolLM2's 9 heads and 3 KV heads divide by 3, not by 2) and pp=2
// with one thread per rank. Each layout decodes the same requests; the output must be the same. The all-reduce cost
// per step is estimated from `micro collectives` (2 ranks, shared memory) at the step's activation size.
//   micro parallel [decodeTokens=48]
import { LLM } from '@pagoda/engine';
import { smolLm2Shape, writeDummyModelDir } from '../dummy-model';

interface LayoutResult {
  layout: string;
  tensorParallelSize: number;
  pipelineParallelSize: number;
  threadsPerRank: number;
  seconds: number;
  outputTokensPerSecond: number;
  msPerStep: number;
}

export default async function parallelBenchmark(args: string[]): Promise<object> {
  const decodeTokens = Number(args[0] ?? 48);
  const streams = 32;
  const modelDir = await writeDummyModelDir();
  const prompts = Array.from({ length: streams }, (_, request) =>
    Array.from({ length: 16 }, (_, position) => 100 + ((request * 7919 + position * 104729) % 31_000)),
  );
  const layouts: Array<[string, number, number, number]> = [
    ['tp1 pp1, 2 threads', 1, 1, 2],
    ['tp3 pp1, 1 thread per rank', 3, 1, 1],
    ['tp1 pp2, 1 thread per rank', 1, 2, 1],
  ];
  const results: LayoutResult[] = [];
  let reference: string[] | undefined;
  for (const [layout, tensorParallelSize, pipelineParallelSize, threadsPerRank] of layouts) {
    const llm = await LLM.create(modelDir, {
      loadFormat: 'dummy',
      kvCacheMemory: '1GiB',
      maxModelLen: 512,
      maxNumSeqs: streams,
      tensorParallelSize,
      pipelineParallelSize,
      intraOpNumThreads: threadsPerRank,
    });
    try {
      await llm.generate([prompts[0]!], { temperature: 0, maxTokens: 2, ignoreEos: true }); // warm-up
      const start = performance.now();
      const outputs = await llm.generate(prompts, { temperature: 0, maxTokens: decodeTokens, ignoreEos: true });
      const seconds = (performance.now() - start) / 1000;
      const tokens = outputs.map((output) => output.outputs[0]!.tokenIds.join());
      if (reference === undefined) reference = tokens;
      else if (tokens.some((text, index) => text !== reference![index])) throw new Error(`${layout}: outputs differ from one rank's`);
      const count = streams * decodeTokens;
      results.push({ layout, tensorParallelSize, pipelineParallelSize, threadsPerRank, seconds, outputTokensPerSecond: count / seconds, msPerStep: (seconds * 1000) / decodeTokens });
      console.log(`${layout}: ${(count / seconds).toFixed(1)} output tok/s, ${((seconds * 1000) / decodeTokens).toFixed(1)} ms per step`);
    } finally {
      await llm.close();
    }
  }
  const base = results[0]!;
  // Two all-reduces per layer (after o_proj and after down_proj) of a [32, 576] activation at tp > 1.
  const allReducesPerStep = 2 * smolLm2Shape.num_hidden_layers;
  const activationFloats = streams * smolLm2Shape.hidden_size;
  return {
    model: 'dummy SmolLM2-135M shape (float32)',
    streams,
    decodeTokens,
    layouts: results,
    ratios: Object.fromEntries(results.slice(1).map((result) => [result.layout, result.outputTokensPerSecond / base.outputTokensPerSecond])),
    allReduce: {
      perStep: allReducesPerStep,
      floatsEach: activationFloats,
      note: 'cost per step = perStep x the 2-rank shared-memory all-reduce time at this size (micro collectives: ~50-75 us at 18k-37k floats on this machine)',
    },
  };
}

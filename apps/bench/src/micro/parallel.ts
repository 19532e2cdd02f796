// Tensor and pipeline parallelism on this machine: the SmolLM2-135M-shaped dummy model at 32 concurrent decodes,
// one rank with 2 intra-op threads against tp=3 (SmolLM2's 9 heads and 3 KV heads divide by 3, not by 2) and pp=2
// with one thread per rank. Each layout decodes the same requests; the output must be the same. The all-reduce cost
// per step is measured on the output rank of a tp=3 model runner decoding 32 requests with 256 tokens of context.
//   micro parallel [decodeTokens=48]
import { createParallelModelExecutor, LLM, loadModelConfig } from '@pagoda/engine';
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
  const allReduce = await measureAllReduce(modelDir, streams);
  console.log(
    `tp3 all-reduce: ${allReduce.allReducesPerStep} per step, ${allReduce.allReduceMsPerStep.toFixed(2)} ms of a ${allReduce.stepMs.toFixed(1)} ms step`,
  );
  return {
    model: 'dummy SmolLM2-135M shape (float32)',
    streams,
    decodeTokens,
    layouts: results,
    ratios: Object.fromEntries(results.slice(1).map((result) => [result.layout, result.outputTokensPerSecond / base.outputTokensPerSecond])),
    allReduce,
  };
}

/** Decode steps of 32 requests (256 tokens of context each) through a tp=3 executor, timing its all-reduces. */
async function measureAllReduce(modelDir: string, streams: number) {
  const blockSize = 16;
  const contextTokens = 256;
  const blocksPerRequest = contextTokens / blockSize + 1;
  const modelConfig = await loadModelConfig(modelDir);
  const executor = await createParallelModelExecutor({
    modelDir,
    modelConfig,
    tensorParallelSize: 3,
    pipelineParallelSize: 1,
    numBlocks: streams * blocksPerRequest,
    blockSize,
    loadFormat: 'dummy',
    seed: 0,
    intraOpNumThreads: 1,
    maxNumBatchedTokens: 2048,
    maxNumSeqs: streams,
  });
  try {
    const requests = Array.from({ length: streams }, (_, request) => ({
      tokenIds: [100 + request],
      numComputedTokens: contextTokens,
      blockTable: Array.from({ length: blocksPerRequest }, (_, block) => request * blocksPerRequest + block),
    }));
    for (let step = 0; step < 2; step += 1) await executor.execute(requests);
    const steps = 10;
    let allReduceMs = 0;
    let allReduces = 0;
    const started = performance.now();
    for (let step = 0; step < steps; step += 1) {
      const output = await executor.execute(requests);
      allReduceMs += output.parallelStats?.allReduceMs ?? 0;
      allReduces += output.parallelStats?.allReduceCount ?? 0;
    }
    const stepMs = (performance.now() - started) / steps;
    return {
      layout: 'tp3, 1 thread per rank',
      streams,
      contextTokens,
      allReducesPerStep: allReduces / steps,
      floatsEach: streams * smolLm2Shape.hidden_size,
      allReduceMsPerStep: allReduceMs / steps,
      stepMs,
      note: 'time the output rank spends in all-reduces per step: the collectives themselves plus waiting for the slowest rank',
    };
  } finally {
    await executor.release();
  }
}

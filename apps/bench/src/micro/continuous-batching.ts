// Continuous batching against one request at a time, on a dummy model of SmolLM2-135M's shape: 64 requests of 128
// prompt and 128 output tokens through LLM.generate at once, and a sample of the same requests run one by one, in
// the same process. Throughput is output tokens per second.
//   micro continuous-batching [numRequests=64] [sequentialSample=8] [intraOpThreads=2]
import { LLM } from '@pagoda/engine';
import { writeDummyModelDir } from '../dummy-model';

export default async function continuousBatchingBenchmark(args: string[]): Promise<object> {
  const numRequests = Number(args[0] ?? 64);
  const sequentialSample = Number(args[1] ?? 8);
  const intraOpNumThreads = Number(args[2] ?? 2);
  const promptTokens = 128;
  const outputTokens = 128;
  const modelDir = await writeDummyModelDir();
  const loadStart = performance.now();
  const llm = await LLM.create(modelDir, {
    loadFormat: 'dummy',
    kvCacheMemory: '2GiB',
    maxModelLen: 1024,
    maxNumSeqs: 64,
    maxNumBatchedTokens: 2048,
    intraOpNumThreads,
  });
  const loadSeconds = (performance.now() - loadStart) / 1000;
  // Distinct prompts (no prefix-cache help), token ids inside the tiny-llama tokenizer's 32,000.
  const prompts = Array.from({ length: numRequests }, (_, request) =>
    Array.from({ length: promptTokens }, (_, position) => 100 + ((request * 7919 + position * 104729) % 31_000)),
  );
  const params = { temperature: 0, maxTokens: outputTokens, ignoreEos: true };

  await llm.generate([prompts[0]!.slice(0, 16)], { ...params, maxTokens: 4 }); // warm-up

  const batchedStart = performance.now();
  const batched = await llm.generate(prompts, params);
  const batchedSeconds = (performance.now() - batchedStart) / 1000;
  const batchedTokens = batched.reduce((sum, output) => sum + output.outputs[0]!.tokenIds.length, 0);

  const sequentialStart = performance.now();
  let sequentialTokens = 0;
  for (let index = 0; index < sequentialSample; index += 1) {
    const [output] = await llm.generate([prompts[index]!], params);
    sequentialTokens += output!.outputs[0]!.tokenIds.length;
    if (output!.outputs[0]!.tokenIds.join() !== batched[index]!.outputs[0]!.tokenIds.join()) {
      throw new Error(`request ${index}: the batched output differs from the one-at-a-time output`);
    }
  }
  const sequentialSeconds = (performance.now() - sequentialStart) / 1000;
  const stats = llm.makeStats();
  await llm.close();

  const result = {
    model: 'dummy SmolLM2-135M shape (float32)',
    numRequests,
    promptTokens,
    outputTokens,
    intraOpNumThreads,
    loadSeconds,
    batched: { seconds: batchedSeconds, outputTokens: batchedTokens, outputTokensPerSecond: batchedTokens / batchedSeconds },
    sequential: {
      requestsRun: sequentialSample,
      seconds: sequentialSeconds,
      outputTokens: sequentialTokens,
      outputTokensPerSecond: sequentialTokens / sequentialSeconds,
    },
    speedup: batchedTokens / batchedSeconds / (sequentialTokens / sequentialSeconds),
    goalSpeedup: 4,
    numPreemptions: stats.numPreemptionsTotal,
  };
  console.log(
    `continuous batching ${result.batched.outputTokensPerSecond.toFixed(1)} tok/s vs one at a time ` +
      `${result.sequential.outputTokensPerSecond.toFixed(1)} tok/s: ${result.speedup.toFixed(2)}x`,
  );
  return result;
}

// Scheduler overhead per step: schedule() + updateFromOutput() with 256 running decode requests and 64 waiting
// (held back by max_num_seqs), as an engine step sees it. The fake runner's work is not timed.
import { KVCacheManager } from '@pagoda/kv-cache';
import { type ModelRunnerOutput, Scheduler } from '@pagoda/scheduler';

export default async function schedulerBenchmark(args: string[]): Promise<object> {
  const numRunning = Number(args[0] ?? 256);
  const numWaiting = Number(args[1] ?? 64);
  const steps = Number(args[2] ?? 2000);
  const promptTokens = 128;
  const blockSize = 16;
  const maxModelLen = 8192;
  const kvCacheManager = new KVCacheManager({ numBlocks: (numRunning + numWaiting) * 200, blockSize, maxModelLen });
  const scheduler = new Scheduler({ maxNumSeqs: numRunning, maxNumBatchedTokens: 8192, maxModelLen }, kvCacheManager);
  for (let index = 0; index < numRunning + numWaiting; index += 1) {
    scheduler.addRequest({
      requestId: `r${index}`,
      promptTokenIds: Array.from({ length: promptTokens }, (_, position) => index * 1000 + position),
      maxTokens: maxModelLen - promptTokens,
      ignoreEos: true,
    });
  }
  const sampleAll = (numScheduledTokens: Readonly<Record<string, number>>): ModelRunnerOutput => {
    const sampledTokenIds: Record<string, number[]> = {};
    for (const requestId in numScheduledTokens) sampledTokenIds[requestId] = [7];
    return { sampledTokenIds };
  };
  // Prefill every running request first (not timed): the timed steps are pure decode.
  for (let step = 0; step < 20; step += 1) {
    const output = scheduler.schedule();
    scheduler.updateFromOutput(output, sampleAll(output.numScheduledTokens));
  }

  let scheduleNs = 0n;
  let updateNs = 0n;
  let scheduledTokens = 0;
  for (let step = 0; step < steps; step += 1) {
    const start = process.hrtime.bigint();
    const output = scheduler.schedule();
    const scheduled = process.hrtime.bigint();
    const runnerOutput = sampleAll(output.numScheduledTokens);
    const updateStart = process.hrtime.bigint();
    scheduler.updateFromOutput(output, runnerOutput);
    const end = process.hrtime.bigint();
    scheduleNs += scheduled - start;
    updateNs += end - updateStart;
    scheduledTokens += output.totalNumScheduledTokens;
  }
  const stats = scheduler.makeStats();
  const result = {
    numRunning: stats.numRunningRequests,
    numWaiting: stats.numWaitingRequests,
    steps,
    scheduledTokensPerStep: scheduledTokens / steps,
    scheduleUsPerStep: Number(scheduleNs) / 1000 / steps,
    updateFromOutputUsPerStep: Number(updateNs) / 1000 / steps,
    totalUsPerStep: Number(scheduleNs + updateNs) / 1000 / steps,
    goalUsPerStep: 200,
  };
  console.log(
    `${result.numRunning} running, ${result.numWaiting} waiting: schedule ${result.scheduleUsPerStep.toFixed(1)} µs + ` +
      `updateFromOutput ${result.updateFromOutputUsPerStep.toFixed(1)} µs = ${result.totalUsPerStep.toFixed(1)} µs per step`,
  );
  return result;
}

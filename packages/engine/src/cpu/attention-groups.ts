import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';

/**
 * Padding beyond this many (query, key) pairs splits a mixed batch. Each pair costs about 4 × hidden × layers
 * floating-point operations (scores and weighted values); at SmolLM2-135M's size 65,536 pairs are ~4.5 GFLOP, about
 * what the second run's extra pass over the weights costs.
 */
const maxPaddingPairs = 65_536;

/**
 * Attention inside one run pads every request to the run's longest query and longest context. Beside a long prompt
 * chunk, a decode (one query) would be padded to the chunk's length: with many decodes that multiplies the
 * attention's work and memory by their number. When padding would add more than `maxPaddingPairs` (query, key)
 * pairs, a batch holding both runs as two groups, the single-token requests and the others: two session runs, each
 * padded only to its own shape. Returns the groups as request indices, or `undefined` when one run is fine.
 */
export function attentionGroups(requests: readonly ModelRunnerRequest[]): number[][] | undefined {
  let maxQuery = 0;
  let maxKeys = 0;
  let realWork = 0;
  for (const request of requests) {
    const query = request.tokenIds.length;
    const keys = request.numComputedTokens + query;
    maxQuery = Math.max(maxQuery, query);
    maxKeys = Math.max(maxKeys, keys);
    realWork += query * keys;
  }
  if (requests.length * maxQuery * maxKeys - realWork <= maxPaddingPairs) return undefined;
  const decodes: number[] = [];
  const others: number[] = [];
  requests.forEach((request, index) => (request.tokenIds.length === 1 ? decodes : others).push(index));
  return decodes.length === 0 || others.length === 0 ? undefined : [decodes, others];
}

/**
 * Runs `requests` through `run`, in one call or, when {@link attentionGroups} says so, one call per group, and
 * returns the output as one call would: logits rows in request order.
 */
export async function executeInAttentionGroups(
  requests: readonly ModelRunnerRequest[],
  run: (requests: readonly ModelRunnerRequest[]) => Promise<ModelRunnerOutput>,
): Promise<ModelRunnerOutput> {
  const groups = attentionGroups(requests);
  if (groups === undefined) return run(requests);
  const outputs: ModelRunnerOutput[] = [];
  for (const group of groups) outputs.push(await run(group.map((index) => requests[index]!)));
  const vocabSize = outputs[0]!.vocabSize;
  // Where each request's rows are: its group's output and its position in that group.
  const place = new Array<{ output: ModelRunnerOutput; local: number }>(requests.length);
  groups.forEach((group, groupIndex) => group.forEach((index, local) => (place[index] = { output: outputs[groupIndex]!, local })));
  const logitsRowStart = new Int32Array(requests.length + 1);
  for (let index = 0; index < requests.length; index += 1) {
    const { output, local } = place[index]!;
    logitsRowStart[index + 1] = logitsRowStart[index]! + output.logitsRowStart[local + 1]! - output.logitsRowStart[local]!;
  }
  const logits = new Float32Array(logitsRowStart[requests.length]! * vocabSize);
  for (let index = 0; index < requests.length; index += 1) {
    const { output, local } = place[index]!;
    logits.set(output.logits.subarray(output.logitsRowStart[local]! * vocabSize, output.logitsRowStart[local + 1]! * vocabSize), logitsRowStart[index]! * vocabSize);
  }
  const stats = outputs.map((output) => output.parallelStats).filter((entry) => entry !== undefined);
  return {
    logits,
    vocabSize,
    logitsRowStart,
    ...(stats.length === 0
      ? {}
      : {
          parallelStats: {
            allReduceCount: stats.reduce((sum, entry) => sum + entry.allReduceCount, 0),
            allReduceMs: stats.reduce((sum, entry) => sum + entry.allReduceMs, 0),
          },
        }),
  };
}

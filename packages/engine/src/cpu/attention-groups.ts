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
 * Most new tokens in one session run. A run's activations grow with its token count (a 1,024-token prompt step of
 * a Qwen3-0.6B shape raised RSS by ~740 MiB, a 256-token one by ~77 MiB, and a serving peak above start-up was
 * ~1 MiB per token of the longest run: every layer's new keys and values come back at once, beside the run's
 * intermediates), while a matrix product over 128-256 rows already runs near its best. A longer step runs as
 * several, in order, as chunked prefill would.
 */
export const maxTokensPerRun = 256;

/** The keys and values one run may return (all layers, float32): sets {@link runTokenCap}. */
export const maxKvBytesPerRun = 16 * 2 ** 20;

/**
 * The token cap of a model's runs: {@link maxTokensPerRun}, lowered (in steps of 32, to no less than 32) until the
 * run's new keys and values fit {@link maxKvBytesPerRun}, so a model with wide layers keeps a step's activations
 * near a small one's. Measured (pagoda-bench memory, int4, 8 × 128-token prompts, three interleaved runs each): the
 * Qwen3-0.6B shape, whose 229 KiB of keys and values per token give 64, peaks at 1,095-1,105 MiB against
 * 1,124-1,198 MiB at 128, prefilling 3% slower than at 128; SmolLM2-135M (46 KiB per token)
 * keeps 256, where 128 prefills ~8% slower.
 */
export function runTokenCap(shape: { readonly numLayers: number; readonly numKvHeads: number; readonly headDim: number }): number {
  const kvBytesPerToken = shape.numLayers * 2 * shape.numKvHeads * shape.headDim * 4;
  const fitting = Math.floor(maxKvBytesPerRun / kvBytesPerToken / 32) * 32;
  return Math.max(32, Math.min(maxTokensPerRun, fitting));
}

/** One request's share of one session run: request `request`, or the piece `part` of its tokens. */
interface RunPart {
  readonly request: number;
  readonly part: ModelRunnerRequest;
}

/**
 * `indices` of `requests` packed, in order, into runs of at most `cap` new tokens. A request that does not fit the
 * run being filled is cut: its first tokens end this run (no logits), the rest go on in the next runs, each piece at
 * its own positions and over the same block table, so the pieces' keys and values are in the pools before the next
 * piece reads them. A request asking for every row (`all`) gets each piece's; one asking for the last gets it from
 * its last piece.
 */
export function tokenRuns(requests: readonly ModelRunnerRequest[], indices: readonly number[], cap: number): RunPart[][] {
  const runs: RunPart[][] = [];
  let current: RunPart[] = [];
  let used = 0;
  for (const index of indices) {
    const request = requests[index]!;
    const total = request.tokenIds.length;
    let offset = 0;
    do {
      if (used >= cap) {
        runs.push(current);
        current = [];
        used = 0;
      }
      const end = Math.min(total, offset + cap - used);
      const mode = request.logits ?? 'last';
      const part: ModelRunnerRequest =
        offset === 0 && end === total
          ? request
          : {
              tokenIds: Array.from({ length: end - offset }, (_, token) => request.tokenIds[offset + token]!),
              numComputedTokens: request.numComputedTokens + offset,
              blockTable: request.blockTable,
              logits: mode === 'all' ? 'all' : end === total ? mode : 'none',
            };
      current.push({ request: index, part });
      used += end - offset;
      offset = end;
    } while (offset < total);
  }
  if (current.length > 0) runs.push(current);
  return runs;
}

/**
 * Runs `requests` through `run`: in one call, or in several when {@link attentionGroups} splits the batch or it
 * holds more than `cap` new tokens ({@link tokenRuns}; default {@link maxTokensPerRun}, the runners pass
 * {@link runTokenCap}); returns the output as one call would: logits rows in request order, each request's pieces
 * in token order.
 */
export async function executeInAttentionGroups(
  requests: readonly ModelRunnerRequest[],
  run: (requests: readonly ModelRunnerRequest[]) => Promise<ModelRunnerOutput>,
  cap: number = maxTokensPerRun,
): Promise<ModelRunnerOutput> {
  const groups = attentionGroups(requests) ?? [requests.map((_, index) => index)];
  const runs = groups.flatMap((group) => tokenRuns(requests, group, cap));
  if (runs.length === 1) return run(requests);
  const outputs: ModelRunnerOutput[] = [];
  for (const parts of runs) outputs.push(await run(parts.map((entry) => entry.part)));
  const vocabSize = outputs[0]!.vocabSize;
  // Where each request's rows are: for each of its pieces, the run's output and the piece's place in that run.
  const places = requests.map((): Array<{ output: ModelRunnerOutput; local: number }> => []);
  runs.forEach((parts, runIndex) => parts.forEach((entry, local) => places[entry.request]!.push({ output: outputs[runIndex]!, local })));
  const logitsRowStart = new Int32Array(requests.length + 1);
  places.forEach((pieces, index) => {
    const rows = pieces.reduce((sum, { output, local }) => sum + output.logitsRowStart[local + 1]! - output.logitsRowStart[local]!, 0);
    logitsRowStart[index + 1] = logitsRowStart[index]! + rows;
  });
  const logits = new Float32Array(logitsRowStart[requests.length]! * vocabSize);
  places.forEach((pieces, index) => {
    let row = logitsRowStart[index]!;
    for (const { output, local } of pieces) {
      const from = output.logitsRowStart[local]!;
      const to = output.logitsRowStart[local + 1]!;
      logits.set(output.logits.subarray(from * vocabSize, to * vocabSize), row * vocabSize);
      row += to - from;
    }
  });
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

// Accuracy at equal bits: next-token distributions of each engine, teacher-forced on the same token sequences, held
// against Pagoda's float32 run of the same weights (which matches transformers within 1e-5 on the fixtures).
import type { ModelRunner } from '@pagoda/engine';
import type { LlamaModel } from 'node-llama-cpp';

/** A token sequence and the first position whose next-token distribution is scored. */
export interface ScoredSequence {
  readonly tokens: readonly number[];
  /** Distributions are taken after tokens[firstScored - 1], ..., tokens[tokens.length - 2]. */
  readonly firstScored: number;
}

/** Log-probabilities of the next token after each scored position: `[positions][vocab]`. */
export type LogProbabilities = Float32Array[];

/** Mean KL divergence from the reference and top-1 agreement with it, over every scored position. */
export interface Agreement {
  readonly positions: number;
  readonly mean_kl: number;
  readonly top1_agreement: number;
}

/** Pagoda's distributions: the prefix up to the first scored position in one step, the rest in a second. */
export async function pagodaLogProbabilities(runner: ModelRunner, sequences: readonly ScoredSequence[]): Promise<LogProbabilities[]> {
  const results: LogProbabilities[] = [];
  let firstBlock = 0;
  for (const { tokens, firstScored } of sequences) {
    const blocks = Math.ceil(tokens.length / runner.blockSize);
    const blockTable = Array.from({ length: blocks }, (_, index) => firstBlock + index);
    firstBlock += blocks;
    const prefix = await runner.execute([{ tokenIds: tokens.slice(0, firstScored), numComputedTokens: 0, blockTable }]);
    const rest = await runner.execute([{ tokenIds: tokens.slice(firstScored, -1), numComputedTokens: firstScored, blockTable, logits: 'all' }]);
    const vocab = prefix.vocabSize;
    const rows = [prefix.logits.subarray(0, vocab)];
    for (let row = 0; row < tokens.length - 1 - firstScored; row += 1) rows.push(rest.logits.subarray(row * vocab, (row + 1) * vocab));
    results.push(rows.map(logSoftmax));
  }
  return results;
}

/**
 * llama.cpp's distributions through node-llama-cpp's controlledEvaluate: the full softmax of the raw logits
 * (temperature 1, no top-k, top-p or min-p) after each scored position, one context per sequence.
 */
export async function llamaCppLogProbabilities(model: LlamaModel, sequences: readonly ScoredSequence[], threads: number, vocabSize: number): Promise<LogProbabilities[]> {
  const results: LogProbabilities[] = [];
  for (const { tokens, firstScored } of sequences) {
    const context = await model.createContext({ contextSize: tokens.length + 16, threads, batchSize: Math.max(512, tokens.length) });
    try {
      const sequence = context.getSequence();
      const next = { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } };
      const input = tokens.slice(0, -1).map((token, position) => (position >= firstScored - 1 ? [token, next] : token));
      const outputs = await sequence.controlledEvaluate(input as Parameters<typeof sequence.controlledEvaluate>[0]);
      const rows: Float32Array[] = [];
      outputs.forEach((output, position) => {
        if (position < firstScored - 1) return;
        const probabilities = output?.next?.probabilities;
        if (probabilities === undefined) throw new Error(`llama.cpp returned no distribution at position ${position}`);
        const row = new Float32Array(vocabSize).fill(Math.log(1e-30));
        for (const [token, probability] of probabilities) row[token as number] = Math.log(Math.max(probability, 1e-30));
        rows.push(row);
      });
      results.push(rows);
    } finally {
      await context.dispose();
    }
  }
  return results;
}

/** KL(reference ‖ candidate) and whether the most likely tokens agree, averaged over every position. */
export function agreement(reference: readonly LogProbabilities[], candidate: readonly LogProbabilities[]): Agreement {
  let positions = 0;
  let kl = 0;
  let same = 0;
  reference.forEach((rows, sequence) => {
    rows.forEach((referenceRow, position) => {
      const candidateRow = candidate[sequence]![position]!;
      let divergence = 0;
      for (let token = 0; token < referenceRow.length; token += 1) {
        const probability = Math.exp(referenceRow[token]!);
        if (probability > 0) divergence += probability * (referenceRow[token]! - candidateRow[token]!);
      }
      kl += divergence;
      if (argmaxOf(referenceRow) === argmaxOf(candidateRow)) same += 1;
      positions += 1;
    });
  });
  return { positions, mean_kl: kl / positions, top1_agreement: same / positions };
}

function logSoftmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const value of logits) max = Math.max(max, value);
  let sum = 0;
  for (const value of logits) sum += Math.exp(value - max);
  const offset = max + Math.log(sum);
  return logits.map((value) => value - offset);
}

function argmaxOf(values: Float32Array): number {
  let best = 0;
  for (let index = 1; index < values.length; index += 1) if (values[index]! > values[best]!) best = index;
  return best;
}

import {
  dummyWeights,
  type GgmlTypeName,
  loadCheckpointWeights,
  loadModelConfig,
  type ModelConfig,
  ModelRunner,
  type ModelWeights,
  type Quantization,
  quantizeModelWeights,
} from '@pagoda/engine';
import { readReference } from '@pagoda/fixtures';
import type { Llama } from 'node-llama-cpp';
import { join } from 'node:path';
import { exportModelGguf } from '../gguf/export-llama';
import { type Agreement, agreement, llamaCppLogProbabilities, type LogProbabilities, pagodaLogProbabilities, type ScoredSequence } from './accuracy';

/** One model's accuracy at equal bits, every engine against Pagoda float32 on the same weights. */
export interface AccuracyResult {
  readonly model: string;
  readonly positions: number;
  /** llama.cpp F32 against Pagoda float32: the floor two correct float32 engines reach. */
  readonly llama_cpp_f32: Agreement;
  readonly llama_cpp_quantized?: Agreement;
  readonly pagoda_quantized?: Agreement;
  /** Pagoda's quantized distributions against llama.cpp's at the same bits (top-1: the same greedy token). */
  readonly pagoda_vs_llama_cpp_quantized?: Agreement;
}

/** The tiny-llama fixture's prompts, each followed by its 24 reference greedy tokens; the greedy steps are scored. */
export function fixtureSequences(): ScoredSequence[] {
  return readReference('tiny-llama').prompts.map((prompt) => ({ tokens: [...prompt.ids, ...prompt.greedy.ids], firstScored: prompt.ids.length }));
}

async function pagodaRun(config: ModelConfig, weights: ModelWeights, sequences: readonly ScoredSequence[], threads: number, accuracyLevel?: number): Promise<LogProbabilities[]> {
  const numBlocks = sequences.reduce((sum, sequence) => sum + Math.ceil(sequence.tokens.length / 16), 0);
  const runner = await ModelRunner.create(config, weights, { numBlocks, blockSize: 16, intraOpNumThreads: threads, ...(accuracyLevel === undefined ? {} : { accuracyLevel }) });
  try {
    return await pagodaLogProbabilities(runner, sequences);
  } finally {
    await runner.release();
  }
}

async function llamaCppRun(llama: Llama, file: string, sequences: readonly ScoredSequence[], threads: number, vocabSize: number): Promise<LogProbabilities[]> {
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  try {
    return await llamaCppLogProbabilities(model, sequences, threads, vocabSize);
  } finally {
    await model.dispose();
  }
}

/**
 * For each model: Pagoda float32 (the reference), Pagoda at `bits.pagoda`, llama.cpp on an F32 GGUF and on one of
 * `bits.ggufType`, all teacher-forced on the fixture sequences.
 */
export async function compareAccuracy(input: {
  readonly llama: Llama;
  readonly models: ReadonlyArray<{ label: string; modelDir: string; weights: 'dummy' | 'checkpoint'; seed: number }>;
  readonly bits: { readonly ggufType: GgmlTypeName; readonly pagoda: Quantization | undefined };
  readonly accuracyLevel: number | undefined;
  readonly threads: number;
  readonly directory: string;
}): Promise<AccuracyResult[]> {
  const sequences = fixtureSequences();
  const results: AccuracyResult[] = [];
  for (const [index, { label, modelDir, weights: source, seed }] of input.models.entries()) {
    console.log(`accuracy on ${label}: Pagoda float32${input.bits.pagoda === undefined ? '' : ` and ${input.bits.pagoda}`}, llama.cpp F32${input.bits.ggufType === 'F32' ? '' : ` and ${input.bits.ggufType}`}...`);
    const config = await loadModelConfig(modelDir);
    const weights = source === 'dummy' ? dummyWeights(config, seed) : await loadCheckpointWeights(modelDir, config);
    const reference = await pagodaRun(config, weights, sequences, input.threads);
    const gguf = async (type: GgmlTypeName): Promise<string> => {
      const file = join(input.directory, `accuracy-${index}-${type}.gguf`);
      await exportModelGguf(modelDir, file, { weights: source, seed, type });
      return file;
    };
    const llamaF32 = await llamaCppRun(input.llama, await gguf('F32'), sequences, input.threads, config.vocabSize);
    let result: AccuracyResult = { model: label, positions: reference.reduce((sum, rows) => sum + rows.length, 0), llama_cpp_f32: agreement(reference, llamaF32) };
    if (input.bits.pagoda !== undefined) {
      const pagoda = await pagodaRun(config, quantizeModelWeights(weights, input.bits.pagoda), sequences, input.threads, input.accuracyLevel);
      const llamaQuantized = await llamaCppRun(input.llama, await gguf(input.bits.ggufType), sequences, input.threads, config.vocabSize);
      result = {
        ...result,
        llama_cpp_quantized: agreement(reference, llamaQuantized),
        pagoda_quantized: agreement(reference, pagoda),
        pagoda_vs_llama_cpp_quantized: agreement(llamaQuantized, pagoda),
      };
    }
    results.push(result);
  }
  return results;
}

export function printAccuracy(results: readonly AccuracyResult[], ggufType: GgmlTypeName): void {
  console.log(`\nAccuracy against Pagoda float32, teacher-forced on the tiny-llama fixture's prompts and greedy tokens (mean KL, top-1 agreement)`);
  for (const result of results) {
    const cell = (entry: Agreement | undefined): string => (entry === undefined ? '-' : `${entry.mean_kl.toExponential(2)}, ${(100 * entry.top1_agreement).toFixed(1)}%`);
    console.log(`  ${result.model} (${result.positions} positions)`);
    console.log(`    llama.cpp F32: ${cell(result.llama_cpp_f32)}`);
    if (result.pagoda_quantized !== undefined) {
      console.log(`    Pagoda ${ggufType === 'Q8_0' ? 'int8' : 'int4'}: ${cell(result.pagoda_quantized)}    llama.cpp ${ggufType}: ${cell(result.llama_cpp_quantized)}`);
      console.log(`    Pagoda against llama.cpp at ${ggufType}: ${cell(result.pagoda_vs_llama_cpp_quantized)}`);
    }
  }
}

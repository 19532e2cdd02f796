import type { TextTokenizer } from '@pagoda/engine';
import { type EngineOptions, LLM } from '@pagoda/engine';
import { rm } from 'node:fs/promises';
import { integerOption, UsageError } from '../cli-args';
import { writeDummyModelDir } from '../dummy-model';
import { randomDataset } from '../serve/datasets';

/** The engine options the offline benchmarks take, as `parseArgs` option specs. */
export const engineOptionSpecs = {
  model: { type: 'string' },
  'load-format': { type: 'string' },
  'max-model-len': { type: 'string' },
  'max-num-seqs': { type: 'string' },
  'max-num-batched-tokens': { type: 'string' },
  'kv-cache-memory': { type: 'string' },
  'intra-op-num-threads': { type: 'string' },
  quantization: { type: 'string' },
  'accuracy-level': { type: 'string' },
  'no-enable-prefix-caching': { type: 'boolean', default: false },
} as const;

export const engineOptionsUsage = `Engine
  --model DIR                     a checkpoint folder (default: a dummy SmolLM2-135M-shaped model, seeded random weights)
  --load-format FORMAT            safetensors or dummy (default: dummy without --model, else safetensors)
  --max-model-len N               --max-num-seqs N              --max-num-batched-tokens N
  --kv-cache-memory SIZE          e.g. 2GiB (default: the engine's)
  --intra-op-num-threads N        ONNX Runtime threads (default: one per core)
  --quantization int8|int4        weight-only quantization at load (MatMulNBits)
  --accuracy-level N              MatMulNBits accuracy_level (default the engine's, 4)
  --no-enable-prefix-caching      turn automatic prefix caching off`;

export interface EngineArgs {
  /** undefined: the dummy SmolLM2-shaped model. */
  readonly model: string | undefined;
  readonly options: EngineOptions;
}

export function parseEngineArgs(values: {
  model?: string | undefined;
  'load-format'?: string | undefined;
  'max-model-len'?: string | undefined;
  'max-num-seqs'?: string | undefined;
  'max-num-batched-tokens'?: string | undefined;
  'kv-cache-memory'?: string | undefined;
  'intra-op-num-threads'?: string | undefined;
  quantization?: string | undefined;
  'accuracy-level'?: string | undefined;
  'no-enable-prefix-caching'?: boolean | undefined;
}): EngineArgs {
  const quantization = values.quantization;
  if (quantization !== undefined && quantization !== 'int8' && quantization !== 'int4') throw new UsageError(`--quantization must be int8 or int4, got ${JSON.stringify(quantization)}`);
  const loadFormat = values['load-format'] ?? (values.model === undefined ? 'dummy' : 'safetensors');
  if (loadFormat !== 'dummy' && loadFormat !== 'safetensors') throw new UsageError(`--load-format must be dummy or safetensors, got ${JSON.stringify(loadFormat)}`);
  if (values.model === undefined && loadFormat !== 'dummy') throw new UsageError('the default dummy model has no weights: pass --model DIR or --load-format dummy');
  const options: EngineOptions = {
    loadFormat,
    maxModelLen: integerOption('max-model-len', values['max-model-len'], 1),
    maxNumSeqs: integerOption('max-num-seqs', values['max-num-seqs'], 1),
    maxNumBatchedTokens: integerOption('max-num-batched-tokens', values['max-num-batched-tokens'], 1),
    kvCacheMemory: values['kv-cache-memory'],
    intraOpNumThreads: integerOption('intra-op-num-threads', values['intra-op-num-threads'], 1),
    quantization,
    accuracyLevel: integerOption('accuracy-level', values['accuracy-level'], 0) as EngineOptions['accuracyLevel'],
    enablePrefixCaching: !values['no-enable-prefix-caching'],
  };
  return { model: values.model, options: Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as EngineOptions };
}

/** An `LLM` on the model the arguments name, or on a fresh dummy folder that `close` deletes. */
export async function createBenchmarkLlm(args: EngineArgs): Promise<{ llm: LLM; modelLabel: string; close: () => Promise<void> }> {
  const directory = args.model ?? (await writeDummyModelDir());
  try {
    const llm = await LLM.create(directory, args.options);
    return {
      llm,
      modelLabel: args.model ?? 'dummy SmolLM2-135M-shaped',
      close: async () => {
        await llm.close();
        if (args.model === undefined) await rm(directory, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (args.model === undefined) await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

/** Prompt token ids may use the whole vocabulary the tokenizer and the model share, special tokens left out. */
export function promptVocabulary(tokenizer: TextTokenizer, modelVocabSize: number): { vocabSize: number; excludedTokenIds: number[] } {
  return {
    vocabSize: Math.min(modelVocabSize, tokenizer.tokenizer.get_vocab(true).size),
    excludedTokenIds: [...tokenizer.specialTokenIds],
  };
}

/** Random token-id prompts of `inputLength` tokens from the model's own vocabulary (as `vllm bench`'s random dataset). */
export function randomPrompts(llm: LLM, options: { numPrompts: number; inputLength: number; outputLength: number; seed: number }): number[][] {
  return randomDataset({
    ...options,
    rangeRatio: 0,
    prefixLength: 0,
    ...promptVocabulary(llm.tokenizer, llm.context.modelConfig.vocabSize),
  }).map((request) => request.prompt as number[]);
}

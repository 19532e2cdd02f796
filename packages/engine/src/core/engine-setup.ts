import { KVCacheManager } from '@pagoda/kv-cache';
import { type NormalizedSamplingParams, Sampler, type SamplingParams, validateSamplingParams } from '@pagoda/sampling';
import { checkContextLength, RequestRejectedError, Scheduler } from '@pagoda/scheduler';
import { resolve } from 'node:path';
import { PagodaEngineError } from '../errors';
import { type GenerationConfig, loadGenerationConfig } from '../frontend/generation-config';
import { type ChatMessage, type ChatTemplateOptions, TextTokenizer } from '../frontend/text-tokenizer';
import { loadModelConfig, type ModelConfig } from '../model/model-config';
import { isGgufPath } from '../model/gguf';
import { ggufLoadPlan, storedWeightFormats } from '../model/model-loader';
import { plannedWeightBytes, plannedWeightFormats } from '../model/model-weights';
import { type LoadModelOptions, ModelRunner } from '../cpu/model-runner';
import { nvidiaSmiProbe } from '../paged/gpu-device';
import { createPagedRunner } from '../paged/paged-setup';
import { createParallelModelExecutor } from '../parallel/parallel-executor';
import { EngineCore, type ModelExecutor } from './engine-core';
import { type EngineOptions, EngineOptionsError, resolveEngineOptions, type ResolvedEngineOptions } from './engine-options';
import { type ReasoningMarkers, reasoningParsers } from '../structured-output/reasoning';
import { memoryLogLine, processMemory } from './process-memory';
import { loadPoolerConfig } from '../model/pooler-config';
import type { FrontendRequest } from './output-processor';

/** What the frontend knows of the model: enough to tokenize, validate and detokenize without the core. */
export interface ModelContext {
  /** The model: a checkpoint folder, or a GGUF file. */
  readonly modelDir: string;
  readonly modelConfig: ModelConfig;
  readonly tokenizer: TextTokenizer;
  readonly generationConfig: GenerationConfig;
  readonly options: ResolvedEngineOptions;
  /** config.json's, generation_config.json's and the tokenizer's end-of-sequence ids together. */
  readonly eosTokenIds: readonly number[];
}

/**
 * A prompt: text, token ids, or either in an object; both in one object are an already tokenized text (the ids are
 * used, the text is kept for the output).
 */
export type PromptInput =
  | string
  | readonly number[]
  | { prompt: string }
  | { promptTokenIds: readonly number[] }
  | { prompt: string; promptTokenIds: readonly number[] };

/**
 * The model's config (config.json, or a GGUF file's metadata), tokenizer and generation config (from the model's
 * folder, or the `tokenizer` option's), and the options resolved against them.
 */
export async function loadModelContext(model: string, engineOptions: EngineOptions = {}): Promise<ModelContext> {
  const modelDir = resolve(model);
  const tokenizerDir = engineOptions.tokenizer !== undefined ? resolve(engineOptions.tokenizer) : isGgufPath(modelDir) ? undefined : modelDir;
  if (tokenizerDir === undefined) {
    throw new EngineOptionsError(
      'tokenizer',
      `${modelDir} is a GGUF file, which Pagoda takes the tokenizer for from a Hugging Face folder (tokenizer.json): give it as --tokenizer DIR (the tokenizer option), as vLLM asks for GGUF models`,
    );
  }
  const [modelConfig, tokenizer, generationConfig] = await Promise.all([
    loadModelConfig(modelDir),
    TextTokenizer.load(tokenizerDir),
    loadGenerationConfig(tokenizerDir),
  ]);
  const options = resolveEngineOptions(engineOptions, modelConfig, undefined, await storedWeightFormats(modelDir, modelConfig));
  options.reasoningMarkers = resolveReasoningMarkers(options, tokenizer);
  if (options.runner === 'pooling') options.pooler = await loadPoolerConfig(tokenizerDir, options.poolerConfig);
  const eosTokenIds = [...new Set([...modelConfig.eosTokenIds, ...generationConfig.eosTokenIds, ...(tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId])])];
  return { modelDir, modelConfig, tokenizer, generationConfig, options, eosTokenIds };
}

/** The reasoning parser's markers in the tokenizer's vocabulary; an `EngineOptionsError` when it has no end marker. */
function resolveReasoningMarkers(options: ResolvedEngineOptions, tokenizer: TextTokenizer): ReasoningMarkers | undefined {
  if (options.reasoningParser === undefined) return undefined;
  const { start, end } = reasoningParsers[options.reasoningParser];
  const endTokenId = tokenizer.tokenizer.token_to_id(end);
  if (endTokenId === undefined) {
    throw new EngineOptionsError('reasoning_parser', `reasoning_parser ${options.reasoningParser} needs the token ${end}, which this model's vocabulary lacks`);
  }
  return { startTokenId: tokenizer.tokenizer.token_to_id(start) ?? undefined, endTokenId };
}

/**
 * Builds the engine core: the model runner over a KV cache of the planned size (on a GPU, planned here from a
 * profiling run), the scheduler and the sampler.
 */
export async function createEngineCore(
  context: Pick<ModelContext, 'modelDir' | 'options'>,
  loadOptions: Pick<LoadModelOptions, 'onProgress'> = {},
): Promise<EngineCore> {
  const { options } = context;
  const memoryBefore = processMemory();
  const config = await loadModelConfig(context.modelDir);
  const threads = options.intraOpNumThreads === undefined ? {} : { intraOpNumThreads: options.intraOpNumThreads };
  const weightOptions = {
    loadFormat: options.loadFormat,
    seed: options.seed,
    accuracyLevel: options.accuracyLevel,
    ...(options.quantization === undefined ? {} : { quantization: options.quantization }),
    pooled: options.runner === 'pooling',
  };
  let executor: ModelExecutor;
  let kvCache = options.kvCache;
  const startupLog: string[] = [];
  const gguf = await ggufLoadPlan(context.modelDir, config);
  for (const conversion of gguf?.conversions ?? []) {
    startupLog.push(
      `warning: ${conversion.tensor} is ${conversion.stored}, which MatMulNBits has no layout for: dequantized and re-quantized to ${conversion.loaded.toUpperCase()}`,
    );
  }
  if (options.device !== 'cpu' || options.modelRunner === 'paged-reference') {
    const setup = await createPagedRunner({
      modelDir: context.modelDir,
      config,
      device: options.device,
      dtype: options.dtype,
      blockSize: options.blockSize,
      maxModelLen: options.maxModelLen,
      maxNumSeqs: options.maxNumSeqs,
      maxNumBatchedTokens: options.maxNumBatchedTokens,
      gpuMemoryUtilization: options.gpuMemoryUtilization,
      kvCache,
      ...weightOptions,
      probe: () => nvidiaSmiProbe(),
      ...threads,
      ...loadOptions,
    });
    executor = setup.runner;
    kvCache = setup.kvCache;
    startupLog.push(...setup.log);
  } else if (kvCache === undefined) {
    throw new PagodaEngineError('invalid_engine_option', 'the CPU runner needs a planned KV cache');
  } else if (options.tensorParallelSize * options.pipelineParallelSize === 1) {
    // One rank runs in this thread as before; several run in worker threads behind the same ModelExecutor interface.
    executor = await ModelRunner.load(context.modelDir, {
      numBlocks: kvCache.numBlocks,
      blockSize: options.blockSize,
      executionProvider: options.device,
      ...weightOptions,
      ...threads,
      ...loadOptions,
    });
  } else {
    executor = await createParallelModelExecutor({
      modelDir: context.modelDir,
      modelConfig: config,
      tensorParallelSize: options.tensorParallelSize,
      pipelineParallelSize: options.pipelineParallelSize,
      numBlocks: kvCache.numBlocks,
      blockSize: options.blockSize,
      ...weightOptions,
      ...threads,
      maxNumBatchedTokens: options.maxNumBatchedTokens,
      maxNumSeqs: options.maxNumSeqs,
    });
  }
  const formats = plannedWeightFormats(config, options.quantization, gguf?.formats);
  const memoryAfter = processMemory();
  const startupMemory = {
    rssBeforeLoadingBytes: memoryBefore.rssBytes,
    rssAfterStartupBytes: memoryAfter.rssBytes,
    peakRssBytes: memoryAfter.peakRssBytes,
    weightBytes: plannedWeightBytes(config, formats),
    kvCacheBytes: kvCache.kvCacheBytes,
  };
  startupLog.push(
    memoryLogLine(startupMemory, {
      weightFormats: [...new Set(formats.values())],
      accuracyLevel: [...formats.values()].some((format) => format !== 'float32') ? options.accuracyLevel : undefined,
    }),
  );
  const kvCacheManager = new KVCacheManager({
    numBlocks: kvCache.numBlocks,
    blockSize: options.blockSize,
    maxModelLen: options.maxModelLen,
    enablePrefixCaching: options.enablePrefixCaching,
  });
  const scheduler = new Scheduler(
    {
      maxNumSeqs: options.maxNumSeqs,
      maxNumBatchedTokens: options.maxNumBatchedTokens,
      maxModelLen: options.maxModelLen,
      policy: options.schedulingPolicy,
      longPrefillTokenThreshold: options.longPrefillTokenThreshold,
      // One micro-batch per pipeline stage, so the batches in flight hold different requests and stages overlap.
      numMicroBatches: options.pipelineParallelSize,
    },
    kvCacheManager,
  );
  // Each pipeline stage works on its own batch: stage 0 takes batch N + 1 while the last stage finishes batch N.
  return new EngineCore(scheduler, executor, new Sampler(), {
    maxBatchesInFlight: options.pipelineParallelSize,
    kvCache,
    startupLog,
    startupMemory,
    ...(options.pooler === undefined ? {} : { pooler: options.pooler }),
    // The grammar worker starts with the first constrained request; until then this costs nothing.
    structuredOutputs: {
      modelDir: context.modelDir,
      vocabSize: config.vocabSize,
      disableAnyWhitespace: options.structuredOutputsConfig.disableAnyWhitespace,
      ...(options.reasoningMarkers === undefined ? {} : { reasoning: options.reasoningMarkers }),
    },
  });
}

/**
 * Sampling parameters as the engine applies them: the request's own, then generation_config.json's defaults
 * (unless `generationConfig: 'vllm'`), then vLLM's; validated against the model.
 */
export function resolveSamplingParams(context: ModelContext, params: SamplingParams = {}): NormalizedSamplingParams {
  const merged: Record<string, unknown> = { ...params };
  if (context.options.generationConfig === 'auto') {
    for (const [name, value] of Object.entries(context.generationConfig.defaults)) {
      if (merged[name] === undefined || merged[name] === null) merged[name] = value;
    }
  }
  return validateSamplingParams(merged as SamplingParams, {
    vocabSize: context.modelConfig.vocabSize,
    maxLogprobs: context.options.maxLogprobs,
  });
}

/** Tokenizes (or checks) a prompt and validates it with its parameters, ready for the output processor. */
export function prepareRequest(
  context: ModelContext,
  requestId: string,
  input: PromptInput,
  params: SamplingParams | NormalizedSamplingParams | undefined,
  extra: { priority?: number; cacheSalt?: string; addSpecialTokens?: boolean; normalized?: boolean } = {},
): FrontendRequest {
  let prompt: string | undefined;
  let promptTokenIds: readonly number[];
  if (typeof input === 'string' || (typeof input === 'object' && 'prompt' in input && !('promptTokenIds' in input))) {
    prompt = typeof input === 'string' ? input : input.prompt;
    promptTokenIds = context.tokenizer.encode(prompt, { addSpecialTokens: extra.addSpecialTokens ?? true });
  } else {
    if (typeof input === 'object' && 'prompt' in input) prompt = input.prompt;
    promptTokenIds = Array.isArray(input) ? (input as readonly number[]) : (input as { promptTokenIds: readonly number[] }).promptTokenIds;
    const vocabSize = context.modelConfig.vocabSize;
    const bad = promptTokenIds.find((tokenId) => !Number.isInteger(tokenId) || tokenId < 0 || tokenId >= vocabSize);
    if (bad !== undefined) {
      throw new RequestRejectedError('invalid_request', `prompt token id ${bad} is outside the vocabulary [0, ${vocabSize})`, 'prompt');
    }
  }
  if (promptTokenIds.length === 0) throw new RequestRejectedError('invalid_request', 'the prompt must contain at least one token', 'prompt');
  const samplingParams = extra.normalized ? (params as NormalizedSamplingParams) : resolveSamplingParams(context, params);
  checkContextLength(context.options.maxModelLen, promptTokenIds.length, samplingParams.maxTokens);
  return {
    requestId,
    prompt,
    promptTokenIds: [...promptTokenIds],
    samplingParams,
    eosTokenIds: context.eosTokenIds,
    ...(extra.priority === undefined ? {} : { priority: extra.priority }),
    ...(extra.cacheSalt === undefined ? {} : { cacheSalt: extra.cacheSalt }),
  };
}

/**
 * Why a call does not fit the model's runner, or undefined when it does: a pooling model (`runner: 'pooling'`)
 * computes embeddings only, a generating one text only.
 */
export function runnerMismatch(context: Pick<ModelContext, 'options'>, call: 'generate' | 'embed'): PagodaEngineError | undefined {
  const pooling = context.options.runner === 'pooling';
  if (call === 'generate' && pooling) {
    return new PagodaEngineError('pooling_model', 'this model runs with runner pooling: it computes embeddings (embed), not text');
  }
  if (call === 'embed' && !pooling) return new PagodaEngineError('not_pooling_model', 'embed needs a pooling model: create the engine with runner pooling');
  return undefined;
}

/**
 * The most UTF-8 bytes a prompt may have and still fit the context: no token stands for more than
 * `tokenizer.maxInputBytesPerToken` bytes of text, so a longer text has more than `max_model_len` tokens and is
 * refused before it is tokenized (`Infinity` when the tokenizer's normalizer leaves no such bound).
 */
export function maxPromptBytes(context: Pick<ModelContext, 'tokenizer' | 'options'>): number {
  return context.options.maxModelLen * context.tokenizer.maxInputBytesPerToken;
}

/** Refuses a prompt text too long to fit the context whatever it tokenizes to (see {@link maxPromptBytes}). */
export function checkPromptBytes(context: Pick<ModelContext, 'tokenizer' | 'options'>, bytes: number, param: string): void {
  const limit = maxPromptBytes(context);
  if (bytes <= limit) return;
  const perToken = context.tokenizer.maxInputBytesPerToken;
  const maxModelLen = context.options.maxModelLen;
  throw new RequestRejectedError(
    'context_length_exceeded',
    `This model's maximum context length is ${maxModelLen} tokens. However, your ${param === 'messages' ? 'messages come' : 'prompt comes'} to at least ` +
      `${Math.ceil(bytes / perToken)} tokens (${bytes} bytes, and no token of this tokenizer stands for more than ${perToken}). ` +
      'Please reduce the length of the prompt.',
    param,
  );
}

/** Renders a conversation with the chat template; the rendered text is tokenized without adding special tokens. */
export function renderChat(context: ModelContext, messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
  if (messages.length === 0) throw new PagodaEngineError('invalid_messages', 'messages must contain at least one message');
  return context.tokenizer.applyChatTemplate(messages, options);
}

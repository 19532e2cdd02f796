import { createWorkerExecutor, partitionPlan } from '@pagoda/parallel';
import type { Executor } from '@pagoda/parallel';
import { availableParallelism } from 'node:os';
import { executeInAttentionGroups, runTokenCap } from '../cpu/attention-groups';
import type { ModelExecutor } from '../core/engine-core';
import type { ModelConfig } from '../model/model-config';
import type { Quantization } from '../model/quantization';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import { workerEntry } from '../worker-entry';
import { outputRankOf } from './rank-runner';
import type { RankWorkerData } from './rank-runner';
import { modelShape } from './rank-weights';

/** What {@link createParallelModelExecutor} needs: the model, the layout, the cache and the step's budget. */
export interface ParallelModelExecutorOptions {
  readonly modelDir: string;
  readonly modelConfig: ModelConfig;
  readonly tensorParallelSize: number;
  readonly pipelineParallelSize: number;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly loadFormat: 'safetensors' | 'dummy';
  readonly seed: number;
  /** Weight-only quantization of the checkpoint's float weights (MatMulNBits), the same on every rank. */
  readonly quantization?: Quantization;
  /** MatMulNBits' `accuracy_level`. */
  readonly accuracyLevel?: number;
  /** A pooling model: the last stage returns the final norm's hidden states in place of logits. */
  readonly pooled?: boolean;
  /** Intra-op threads of each rank; default the cores divided by the ranks (at least 1), so they do not oversubscribe. */
  readonly intraOpNumThreads?: number;
  /** Most tokens in a step: sizes the shared slot that all-reduces and stage-to-stage transfers go through. */
  readonly maxNumBatchedTokens: number;
  /** Most requests in a step: with `maxNumBatchedTokens`, how many logits rows one all-gather carries. */
  readonly maxNumSeqs: number;
}

/** A shared slot holds at most this much; longer collectives go in chunks. */
const maxSlotBytes = 64 * 2 ** 20;

/**
 * Runs the model over `tensorParallelSize × pipelineParallelSize` ranks, one worker thread each (see
 * RankModelRunner), behind the engine core's {@link ModelExecutor}: `execute` sends the step's requests to every rank
 * and resolves with the last stage's logits. A rank that fails or a worker that dies rejects the step and every later
 * one with @pagoda/parallel's `ExecutorError`, which the engine core treats as fatal.
 */
export async function createParallelModelExecutor(options: ParallelModelExecutorOptions): Promise<ModelExecutor> {
  const { modelConfig: config, tensorParallelSize, pipelineParallelSize } = options;
  const plan = partitionPlan(modelShape(config), { tensorParallelSize, pipelineParallelSize });
  const worldSize = plan.worldSize;
  const maxLogitsRows = Math.min(options.maxNumSeqs, options.maxNumBatchedTokens);
  const maxMessageElements = Math.min(
    maxSlotBytes / 4,
    Math.max(options.maxNumBatchedTokens * config.hiddenSize, maxLogitsRows * plan.vocabularyShardSize),
  );
  // A logits row of one vocabulary slice is the smallest piece an all-gather can carry.
  const slotElements = Math.max(maxMessageElements, plan.vocabularyShardSize, config.hiddenSize);
  const workerData: RankWorkerData = {
    modelDir: options.modelDir,
    loadFormat: options.loadFormat,
    seed: options.seed,
    quantization: options.quantization,
    accuracyLevel: options.accuracyLevel,
    pooled: options.pooled === true,
    numBlocks: options.numBlocks,
    blockSize: options.blockSize,
    intraOpNumThreads: options.intraOpNumThreads ?? Math.max(1, Math.floor(availableParallelism() / worldSize)),
    tensorParallelSize,
    pipelineParallelSize,
    maxMessageElements: slotElements,
  };
  const entry = workerEntry('parallel/rank-worker');
  const executor = await createWorkerExecutor<readonly ModelRunnerRequest[], ModelRunnerOutput | undefined, RankWorkerData>({
    workerUrl: entry.url,
    ...(entry.execArgv === undefined ? {} : { execArgv: entry.execArgv }),
    worldSize,
    maxMessageBytes: slotElements * 4,
    outputRank: outputRankOf(plan),
    workerData,
  });
  return new ParallelModelExecutor(executor, runTokenCap(config));
}

class ParallelModelExecutor implements ModelExecutor {
  constructor(
    private readonly executor: Executor<readonly ModelRunnerRequest[], ModelRunnerOutput | undefined>,
    private readonly runCap: number,
  ) {}

  execute(requests: readonly ModelRunnerRequest[]): Promise<ModelRunnerOutput> {
    return executeInAttentionGroups(requests, async (group) => (await this.executor.execute(group))!, this.runCap);
  }

  release(): Promise<void> {
    return this.executor.close();
  }
}

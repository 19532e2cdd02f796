import type { KvCachePlan } from '@pagoda/kv-cache';
import type { SchedulerStats } from '@pagoda/scheduler';
import type { EngineCoreOutput, EngineCoreRequest } from './engine-core';
import type { ResolvedEngineOptions } from './engine-options';
import type { StartupMemory } from './process-memory';

/** What the engine-core worker is started with. */
export interface EngineWorkerData {
  readonly modelDir: string;
  readonly options: ResolvedEngineOptions;
}

/** An error as it crosses the thread boundary. */
export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly code: string | undefined;
  readonly param: string | undefined;
  readonly stack: string | undefined;
}

export type ToWorkerMessage =
  | { readonly type: 'add'; readonly requests: readonly EngineCoreRequest[] }
  | { readonly type: 'abort'; readonly requestIds: readonly string[] }
  | { readonly type: 'stop'; readonly requestIds: readonly string[] }
  | { readonly type: 'shutdown' }
  /**
   * Fault injection for tests: the core's loop fails with `message` before its next step, as a crashing core
   * would; with `target: 'rank'`, the tensor/pipeline-parallel ranks' threads exit instead.
   */
  | { readonly type: 'inject-fault'; readonly message: string; readonly target?: 'core' | 'rank' };

export type FromWorkerMessage =
  | {
      readonly type: 'ready';
      readonly stats: SchedulerStats;
      readonly kvCache: KvCachePlan | undefined;
      readonly startupLog: readonly string[];
      readonly startupMemory: StartupMemory | undefined;
    }
  | { readonly type: 'outputs'; readonly outputs: readonly EngineCoreOutput[]; readonly stats: SchedulerStats }
  | { readonly type: 'stats'; readonly stats: SchedulerStats }
  | { readonly type: 'request-error'; readonly requestId: string; readonly error: SerializedError }
  | { readonly type: 'fatal'; readonly error: SerializedError };

export function serializeError(error: unknown): SerializedError {
  const value = error as { name?: unknown; message?: unknown; code?: unknown; param?: unknown; stack?: unknown };
  return {
    name: typeof value?.name === 'string' ? value.name : 'Error',
    message: typeof value?.message === 'string' ? value.message : String(error),
    code: typeof value?.code === 'string' ? value.code : undefined,
    param: typeof value?.param === 'string' ? value.param : undefined,
    stack: typeof value?.stack === 'string' ? value.stack : undefined,
  };
}

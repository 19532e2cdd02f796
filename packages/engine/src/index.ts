export {
  CheckpointError,
  ExecutionProviderError,
  GgufError,
  ModelConfigError,
  ModelInputError,
  PagodaEngineError,
  StructuredOutputError,
} from './errors';
export type { CheckpointErrorCode, GgufErrorCode } from './errors';
export { checkExecutionProvider, cudaProviderInstalled } from './execution-provider';
export type { ExecutionProvider } from './execution-provider';
export { loadModelConfig, parseModelConfig } from './model/model-config';
export type { LayerType, ModelConfig, ModelFamily } from './model/model-config';
export { buildModelGraph, buildSegmentGraph, fullModelSegment } from './model/model-graph';
export type { GraphBlock, GraphSegment, ModelGraph, ModelGraphOptions } from './model/model-graph';
export { EmbeddingTable } from './model/embedding-table';
export type { PlacedRows } from './model/graph-builder';
export { ModelRunner } from './cpu/model-runner';
export {
  buildPagedGraph,
  checkStartupFreeMemory,
  createPagedRunner,
  defaultGpuBlockSize,
  GpuMemoryError,
  GpuProbeError,
  KvPoolPersistenceError,
  layoutPagedBatch,
  metadataEntriesFor,
  nvidiaSmiProbe,
  PagedModelRunner,
  pagedBlockSizeProblem,
  parseNvidiaSmiDevices,
  parseNvidiaSmiProcessMemory,
  planGpuKvBlocks,
  profilingBatch,
  selectDevice,
} from './paged';
export type {
  GpuDeviceInfo,
  GpuKvPlan,
  GpuKvPlanInput,
  GpuProbe,
  PagedBatch,
  PagedBatchContext,
  PagedDevice,
  PagedDtype,
  PagedGraph,
  PagedGraphOptions,
  PagedModelRunnerOptions,
  PagedSetup,
  PagedSetupOptions,
  PoolSelfCheck,
} from './paged';
export { createParallelModelExecutor } from './parallel/parallel-executor';
export type { ParallelModelExecutorOptions } from './parallel/parallel-executor';
export type { LoadModelOptions, ModelRunnerOptions } from './cpu/model-runner';
export type { LogitsRows, ModelRunnerOutput, ModelRunnerRequest } from './model-step';
export {
  dummyWeights,
  expectedWeights,
  loadCheckpointWeights,
  plannedWeightBytes,
  plannedWeightFormats,
  quantizedFormatFor,
  quantizeModelWeights,
} from './model/model-weights';
export type { LoadWeightsOptions } from './model/model-weights';
export { weightLoadingProgressBar } from './progress-bar';
export type { ProgressStream } from './progress-bar';
export { ropeFrequencies, supportedRopeTypes, writeRopeCosSin } from './model/rope';
export type { RopeFrequencies } from './model/rope';
export { availableExecutionProviders, onnxRuntimeVersion } from './runtime';
export { float16ToFloat32, readSafetensorsHeader, readSafetensorsIndex, readSafetensorsTensors } from './model/safetensors';
export type { SafetensorsEntry } from './model/safetensors';
export { floatWeight, heldBytes, quantizedWeight, quantizeWeight } from './model/weight-tensor';
export type {
  FloatWeight,
  ModelWeights,
  QuantizedWeight,
  RowRange,
  WantedTensor,
  WeightFormat,
  WeightTensor,
} from './model/weight-tensor';
export {
  blocksPerRow,
  defaultAccuracyLevel,
  dequantizeRows,
  quantizableColumns,
  quantizationBlockSize,
  quantizeRows,
} from './model/quantization';
export type { Quantization, QuantizedBlocks, QuantizedFormat } from './model/quantization';
export { ggufConversions, loadModelWeights } from './model/model-loader';
export type { ModelWeightsOptions } from './model/model-loader';
export { ggufTensorName, ggufWeights, isGgufPath, readGgufHeader } from './model/gguf';
export type { GgufConversion, GgufHeader, GgufMetadataValue, GgufTensorInfo, GgufWeights } from './model/gguf';
export { ggmlTypes } from './model/ggml-blocks';
export type { GgmlTypeName } from './model/ggml-blocks';
export { ModelFiles, WeightFile } from './model/weight-file';
export type { WeightFileEntry } from './model/weight-file';
export { loadTokenizer } from './tokenizer';
export { bitmaskWords } from './structured-output/backend';
export type { StructuredOutputBackend, StructuredOutputGrammar } from './structured-output/backend';
export { choiceGrammar, XGrammarBackend } from './structured-output/backend-xgrammar';
export type { XGrammarBackendOptions } from './structured-output/backend-xgrammar';
export { reasoningEndedIn, reasoningParsers } from './structured-output/reasoning';
export type { ReasoningMarkers, ReasoningParserName } from './structured-output/reasoning';
export { StructuredOutputManager } from './structured-output/structured-output-manager';
export type {
  PendingBitmasks,
  StructuredOutputManagerOptions,
  StructuredOutputStats,
} from './structured-output/structured-output-manager';
export { xgrammarVocabulary } from './structured-output/tokenizer-info';
export type { XGrammarVocabulary } from './structured-output/tokenizer-info';
export {
  FrontendBudgetError,
  FrontendOverloadedError,
  FrontendPool,
  IncrementalDetokenizer,
  loadGenerationConfig,
  OutputText,
  parseGenerationConfig,
  TextTokenizer,
} from './frontend';
export type {
  ChatMessage,
  ChatTemplateOptions,
  FrontendCallOptions,
  FrontendPoolOptions,
  FrontendTaskKind,
  GenerationConfig,
  GenerationDefaults,
  OutputTextOptions,
  TextDelta,
} from './frontend';
export {
  accumulate,
  AsyncLLM,
  createEngineCore,
  EngineCore,
  EngineDeadError,
  EngineOptionsError,
  EngineRequestError,
  LLM,
  checkPromptBytes,
  loadModelContext,
  maxPromptBytes,
  OutputProcessor,
  prepareRequest,
  renderChat,
  resolveEngineOptions,
  resolveSamplingParams,
} from './core';
export type {
  CompletionOutput,
  EmbeddingOutput,
  EmbedRequest,
  EngineCoreOptions,
  EngineCoreOutput,
  EngineCoreRequest,
  EngineCoreRequestError,
  EngineHealth,
  EngineOptions,
  EngineStats,
  FrontendRequest,
  GenerateRequest,
  ModelContext,
  ModelExecutor,
  ProcessedOutputs,
  PromptInput,
  RequestMetrics,
  RequestOutput,
  ResolvedEngineOptions,
  StartupMemory,
} from './core';
export { loadPoolerConfig } from './model/pooler-config';
export { truncateEmbedding } from './core/prompt-pooler';
export type { PoolerConfig, PoolerConfigInput } from './model/pooler-config';
// The types of the lower layers that the engine's API speaks, so the server needs only this package.
export { RequestRejectedError, RequestStatus, SchedulerError } from '@pagoda/scheduler';
export type { FinishReason, SchedulerStats } from '@pagoda/scheduler';
export { SamplingParamsError, structuredOutputsKey, structuredOutputsSpec } from '@pagoda/sampling';
export type {
  NormalizedSamplingParams,
  SampledTokenLogprobs,
  SamplingParams,
  StructuredOutputsParams,
  StructuredOutputsSpec,
  TokenLogprob,
} from '@pagoda/sampling';
export { formatBytes, KvCacheCapacityError, parseMemorySize } from '@pagoda/kv-cache';

export { ModelConfigError, PagodaEngineError } from './errors';
export { loadModelConfig, parseModelConfig } from './model-config';
export type { ModelConfig, ModelFamily } from './model-config';
export { availableExecutionProviders, onnxRuntimeVersion } from './runtime';
export { loadTokenizer } from './tokenizer';

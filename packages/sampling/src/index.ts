export { SamplingError, SamplingParamsError } from './errors';
export { tokenLogprobs } from './logprobs';
export { argmax } from './pipeline';
export { processLogits } from './process-logits';
export { Sampler } from './sampler';
export { DEFAULT_SAMPLING_PARAMS, GREEDY_TEMPERATURE } from './sampling-params';
export { SeededGenerator } from './seeded-generator';
export { normalizeStructuredOutputs, structuredOutputsKey, structuredOutputsSpec } from './structured-outputs';
export { logSoftmax, logSumExpOf, softmax } from './softmax';
export { MAX_N, validateSamplingParams } from './validate-sampling-params';

export type { SampledTokenLogprobs, TokenLogprob } from './logprobs';
export type { SamplerOptions, SamplerOutput, SamplingBatch, SamplingRow } from './sampler';
export type { NormalizedSamplingParams, SamplingHistory, SamplingParams, TokenBitmask } from './sampling-params';
export type { StructuredOutputsParams, StructuredOutputsSpec } from './structured-outputs';
export type { ValidateSamplingParamsOptions } from './validate-sampling-params';

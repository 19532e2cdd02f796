// @pagoda/engine/test: builders for other packages' tests and benchmarks (GGUF files of any model), not for serving.
export { encodeGgmlRows, quantizedToGgml } from './ggml-encoders';
export { exportGguf, llamaCppVocabulary, permuteRows, vocabularyMetadata } from './gguf-export';
export type { GgufExport, GgufExportOptions, TokenizerJson } from './gguf-export';
export { ggufAlignment, ggufHeader, ggufTensorBytes, ggufValueType, writeGguf } from './gguf-writer';
export type { GgufTensor, GgufValue } from './gguf-writer';

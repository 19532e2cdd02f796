// @pagoda/engine/test: what other packages' tests and benchmarks share, not for serving: GGUF files of any model,
// the JSON oracles the server's client tests check structured outputs with, and the distance embeddings are compared by.
export { encodeGgmlRows, quantizedToGgml } from './ggml-encoders';
export { exportGguf, llamaCppVocabulary, permuteRows, vocabularyMetadata } from './gguf-export';
export type { GgufExport, GgufExportOptions, TokenizerJson } from './gguf-export';
export { ggufAlignment, ggufHeader, ggufTensorBytes, ggufValueType, writeGguf } from './gguf-writer';
export type { GgufTensor, GgufValue } from './gguf-writer';
export { isJsonPrefix, satisfiesSchema } from '../structured-output/test-json';
export { cosineDistance } from './vectors';
export { projectionSession } from './projection-session';
export type { ProjectionSession, ProjectionSessionOptions } from './projection-session';

export { loadGenerationConfig, parseGenerationConfig } from './generation-config';
export type { GenerationConfig, GenerationDefaults } from './generation-config';
export { IncrementalDetokenizer } from './incremental-detokenizer';
export { OutputText } from './output-text';
export type { OutputTextOptions, TextDelta } from './output-text';
export { TextTokenizer } from './text-tokenizer';
export type { ChatMessage, ChatTemplateOptions } from './text-tokenizer';
export { FrontendBudgetError, FrontendOverloadedError, FrontendPool } from './frontend-pool';
export type { FrontendCallOptions, FrontendPoolOptions, FrontendTaskKind } from './frontend-pool';

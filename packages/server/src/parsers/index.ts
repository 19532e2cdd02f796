// Text-only tool-call and reasoning parsers, for the server to wire into chat completions and the Responses API.
export { deltaOrNull } from './delta-message';
export type { DeltaMessage, DeltaToolCall, ToolCall } from './delta-message';
export { DeepSeekR1ReasoningParser, Qwen3ReasoningParser, ReasoningParser } from './reasoning-parsers';
export type { ExtractedReasoning } from './reasoning-parsers';
export { createReasoningParser, createToolParser, defaultToolParserFor, reasoningParsers, toolParsers } from './registry';
export type { ReasoningParserName, ToolParserName } from './registry';
export { toolCallConstraint } from './tool-call-constraint';
export type { ForcedToolChoice, FunctionTool, ToolCallConstraintOptions } from './tool-call-constraint';
export { ToolParser, toolCallId } from './tool-parser';
export type { ExtractedToolCalls, ToolCallScan } from './tool-parser';
export { HermesToolParser, Llama3JsonToolParser, MistralToolParser } from './tool-parsers';

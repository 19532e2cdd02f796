import { DeepSeekR1ReasoningParser, type ReasoningParser, Qwen3ReasoningParser } from './reasoning-parsers';
import type { ToolParser } from './tool-parser';
import { HermesToolParser, Llama3JsonToolParser, MistralToolParser } from './tool-parsers';

/** `--tool-call-parser` names, as vLLM spells them. */
export const toolParsers = {
  hermes: HermesToolParser,
  llama3_json: Llama3JsonToolParser,
  mistral: MistralToolParser,
} as const satisfies Record<string, new () => ToolParser>;

export type ToolParserName = keyof typeof toolParsers;

/** `--reasoning-parser` names, as vLLM spells them. */
export const reasoningParsers = {
  qwen3: Qwen3ReasoningParser,
  deepseek_r1: DeepSeekR1ReasoningParser,
} as const satisfies Record<string, new () => ReasoningParser>;

export type ReasoningParserName = keyof typeof reasoningParsers;

/** A fresh tool parser (one per request: its streaming method keeps state); undefined for an unknown name. */
export function createToolParser(name: string): ToolParser | undefined {
  return Object.hasOwn(toolParsers, name) ? new toolParsers[name as ToolParserName]() : undefined;
}

/** A fresh reasoning parser (one per request); undefined for an unknown name. */
export function createReasoningParser(name: string): ReasoningParser | undefined {
  return Object.hasOwn(reasoningParsers, name) ? new reasoningParsers[name as ReasoningParserName]() : undefined;
}

/**
 * The tool parser a chat template's text implies, where it is recognisable: Qwen's and Hermes' templates write
 * `<tool_call>`, Mistral's `[TOOL_CALLS]`, Llama 3.1+'s `<|python_tag|>` or its `"parameters"` JSON between header
 * tokens. Undefined otherwise: the server then needs `--tool-call-parser`.
 */
export function defaultToolParserFor(chatTemplate: string | undefined): ToolParserName | undefined {
  if (chatTemplate === undefined) return undefined;
  if (chatTemplate.includes('<tool_call>')) return 'hermes';
  if (chatTemplate.includes('[TOOL_CALLS]')) return 'mistral';
  if (chatTemplate.includes('<|python_tag|>') || (chatTemplate.includes('<|start_header_id|>') && chatTemplate.includes('"parameters"'))) {
    return 'llama3_json';
  }
  return undefined;
}

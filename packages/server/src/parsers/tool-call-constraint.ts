import type { StructuredOutputsParams } from '@pagoda/engine';
import type { ToolParserName } from './registry';

/** A function tool as OpenAI's `tools[]` gives it. */
export interface FunctionTool {
  readonly type: 'function';
  readonly function: { readonly name: string; readonly description?: string; readonly parameters?: Readonly<Record<string, unknown>> };
}

/** `tool_choice` values that force calls: `required`, or one named function. */
export type ForcedToolChoice = 'required' | { readonly type: 'function'; readonly function: { readonly name: string } };

export interface ToolCallConstraintOptions {
  /** OpenAI's `parallel_tool_calls` (default true): false allows exactly one call. */
  readonly parallelToolCalls?: boolean;
}

/**
 * The structured-output constraint that makes the model call tools in `parser`'s format, for `tool_choice:
 * "required"` (one of `tools`) or a named function (that one): an XGrammar structural tag whose tags are the calls'
 * fixed text around each function's parameters schema, so even a random-weight model writes a call that the parser
 * reads back and whose arguments validate. Pass it as `samplingParams.structuredOutputs`. Throws a `RangeError` for
 * a named function that is not among `tools`, or for no tools.
 *
 * ```text
 * hermes       <tool_call>\n{"name": "f", "arguments": <schema>}\n</tool_call>   (calls separated by "\n")
 * llama3_json  {"name": "f", "parameters": <schema>}                              (separated by "; ")
 * mistral      [TOOL_CALLS][{"name": "f", "arguments": <schema>}]                 (separated by ", ")
 * ```
 */
export function toolCallConstraint(
  parser: ToolParserName,
  tools: readonly FunctionTool[],
  toolChoice: ForcedToolChoice,
  { parallelToolCalls = true }: ToolCallConstraintOptions = {},
): StructuredOutputsParams {
  const chosen = toolChoice === 'required' ? tools : tools.filter((tool) => tool.function.name === toolChoice.function.name);
  if (chosen.length === 0) {
    throw new RangeError(
      toolChoice === 'required' ? 'tool_choice "required" needs at least one tool' : `tool_choice names ${JSON.stringify(toolChoice.function.name)}, which is not among the tools`,
    );
  }
  const { begin, end, separator, prefix, suffix } = formats[parser];
  const tags = chosen.map((tool) => ({
    type: 'tag',
    begin: begin(tool.function.name),
    content: { type: 'json_schema', json_schema: tool.function.parameters ?? { type: 'object' } },
    end,
  }));
  const calls = { type: 'tags_with_separator', tags, separator, at_least_one: true, stop_after_first: !parallelToolCalls };
  // Mistral's bracket around the calls is a tag whose content is the calls: XGrammar's WASM build fails to compile
  // the same as a `sequence` of const strings around them (it throws a bare C++ exception pointer).
  const format = prefix === undefined ? calls : { type: 'tag', begin: prefix, content: calls, end: suffix };
  return { structuralTag: { type: 'structural_tag', format } };
}

const formats: Record<ToolParserName, { begin: (name: string) => string; end: string; separator: string; prefix?: string; suffix?: string }> = {
  hermes: { begin: (name) => `<tool_call>\n{"name": ${JSON.stringify(name)}, "arguments": `, end: '}\n</tool_call>', separator: '\n' },
  llama3_json: { begin: (name) => `{"name": ${JSON.stringify(name)}, "parameters": `, end: '}', separator: '; ' },
  mistral: { begin: (name) => `{"name": ${JSON.stringify(name)}, "arguments": `, end: '}', separator: ', ', prefix: '[TOOL_CALLS][', suffix: ']' },
};

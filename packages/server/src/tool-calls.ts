import type { StructuredOutputsParams } from '@pagoda/engine';
import { ApiError } from './http-error';
import { createToolParser, type DeltaToolCall, type ToolCall, toolCallConstraint, toolCallId, type ToolParser, type ToolParserName } from './parsers';
import type { FunctionTool } from './schemas';

/** What the server was started with for tools (vLLM's `--tool-call-parser`, `--enable-auto-tool-choice`). */
export interface ToolSettings {
  /** The parser: the one given, else the one the chat template implies, else none. */
  readonly toolCallParser: ToolParserName | undefined;
  readonly enableAutoToolChoice: boolean;
}

/** A request's tool fields, as chat completions and the Responses API give them. */
export interface ToolFields {
  readonly tools?: readonly FunctionTool[] | null;
  readonly tool_choice?: string | { readonly type: string; readonly function: { readonly name: string } } | null;
  readonly parallel_tool_calls?: boolean | null;
}

/**
 * How a request uses tools: the tools its template sees, how its output is read back (a parser, or vLLM's JSON
 * form when tool calls are forced and no parser is known), and the constraint forcing calls (`required`, a named
 * function).
 */
export interface ToolPlan {
  readonly tools: FunctionTool[] | undefined;
  readonly read: 'parser' | 'json-array' | 'json-arguments' | 'none';
  readonly parser: ToolParserName | undefined;
  readonly constraint: StructuredOutputsParams | undefined;
  readonly parallelToolCalls: boolean;
  /** For `json-arguments`: the one function forced. */
  readonly forcedName: string | undefined;
}

const noTools: ToolPlan = { tools: undefined, read: 'none', parser: undefined, constraint: undefined, parallelToolCalls: true, forcedName: undefined };

/**
 * Resolves `tools`, `tool_choice` and `parallel_tool_calls` as vLLM does: with tools and no choice, `auto`;
 * `auto` needs `--enable-auto-tool-choice` and a parser; `required` and a named function are forced by grammar (a
 * structural tag in the parser's format, or without a parser vLLM's JSON form: an array of `{name, parameters}`, or
 * the named function's arguments); `none` lets the template see the tools but reads no calls.
 */
export function planTools(fields: ToolFields, settings: ToolSettings): ToolPlan {
  const tools = fields.tools ?? undefined;
  const choice = fields.tool_choice ?? undefined;
  const parallelToolCalls = fields.parallel_tool_calls ?? true;
  if (tools === undefined || tools.length === 0) {
    if (choice !== undefined && choice !== 'none') throw new ApiError(400, 'tool_choice needs tools to choose from', 'tool_choice');
    return noTools;
  }
  tools.forEach((tool, index) => {
    if (tool.type !== 'function') throw new ApiError(400, `tools[${index}].type must be "function", got ${JSON.stringify(tool.type)}`, 'tools');
  });
  const resolved = choice ?? 'auto';
  const base = { tools: [...tools], parallelToolCalls, forcedName: undefined };
  if (resolved === 'none') return { ...base, read: 'none', parser: undefined, constraint: undefined };
  if (resolved === 'auto') {
    if (!settings.enableAutoToolChoice || settings.toolCallParser === undefined) {
      throw new ApiError(400, '"auto" tool choice needs the server started with --enable-auto-tool-choice and a --tool-call-parser', 'tool_choice');
    }
    return { ...base, read: 'parser', parser: settings.toolCallParser, constraint: undefined };
  }
  if (typeof resolved === 'string' && resolved !== 'required') {
    throw new ApiError(400, `tool_choice must be "none", "auto", "required" or a function, got ${JSON.stringify(resolved)}`, 'tool_choice');
  }
  if (typeof resolved === 'object') {
    if (resolved.type !== 'function') throw new ApiError(400, `tool_choice.type must be "function", got ${JSON.stringify(resolved.type)}`, 'tool_choice');
    if (!tools.some((tool) => tool.function.name === resolved.function.name)) {
      throw new ApiError(400, `tool_choice names the function ${JSON.stringify(resolved.function.name)}, which is not among the tools`, 'tool_choice');
    }
  }
  const forced = resolved === 'required' ? 'required' : { type: 'function' as const, function: { name: resolved.function.name } };
  if (settings.toolCallParser !== undefined) {
    const constraint = toolCallConstraint(settings.toolCallParser, tools as Parameters<typeof toolCallConstraint>[1], forced, { parallelToolCalls });
    return { ...base, read: 'parser', parser: settings.toolCallParser, constraint };
  }
  if (forced === 'required') {
    const call = (tool: FunctionTool) => ({
      type: 'object',
      properties: { name: { const: tool.function.name }, parameters: tool.function.parameters ?? { type: 'object' } },
      required: ['name', 'parameters'],
    });
    const schema = { type: 'array', minItems: 1, ...(parallelToolCalls ? {} : { maxItems: 1 }), items: { anyOf: tools.map(call) } };
    return { ...base, read: 'json-array', parser: undefined, constraint: { json: schema } };
  }
  const tool = tools.find((candidate) => candidate.function.name === forced.function.name)!;
  return { ...base, read: 'json-arguments', parser: undefined, constraint: { json: tool.function.parameters ?? { type: 'object' } }, forcedName: tool.function.name };
}

/** The tool calls in a whole output, and the content left beside them. */
export function readToolCalls(plan: ToolPlan, content: string): { toolCalls: ToolCall[]; content: string | null } {
  switch (plan.read) {
    case 'none':
      return { toolCalls: [], content };
    case 'parser': {
      const extracted = createToolParser(plan.parser!)!.extractToolCalls(content);
      const calls = plan.parallelToolCalls ? extracted.toolCalls : extracted.toolCalls.slice(0, 1);
      return extracted.toolsCalled ? { toolCalls: [...calls], content: extracted.content } : { toolCalls: [], content };
    }
    case 'json-array':
    case 'json-arguments': {
      const calls = jsonToolCalls(plan, content);
      return calls === undefined ? { toolCalls: [], content } : { toolCalls: calls, content: null };
    }
  }
}

/** vLLM's JSON form of forced calls, read back; undefined when the output is not (yet) that JSON. */
function jsonToolCalls(plan: ToolPlan, content: string): ToolCall[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch {
    return undefined;
  }
  const call = (name: string, args: unknown): ToolCall => ({ id: toolCallId(), type: 'function', function: { name, arguments: JSON.stringify(args) } });
  if (plan.read === 'json-arguments') return [call(plan.forcedName!, parsed)];
  if (!Array.isArray(parsed)) return undefined;
  return parsed.map((entry: { name: string; parameters: unknown }) => call(entry.name, entry.parameters));
}

/**
 * Reads tool calls out of a stream of content: through the parser's streaming method, or (vLLM's JSON form) all at
 * once when the output ends. Yields content and `delta.tool_calls` fragments as OpenAI streams them.
 */
export class ToolCallStream {
  private readonly parser: ToolParser | undefined;
  private content = '';
  /** Whether any call went out (the choice then finishes with `tool_calls`). */
  called = false;

  constructor(private readonly plan: ToolPlan) {
    this.parser = plan.read === 'parser' ? createToolParser(plan.parser!) : undefined;
  }

  push(delta: string): { content?: string; toolCalls?: DeltaToolCall[] } {
    const previous = this.content;
    this.content += delta;
    if (this.plan.read === 'none') return delta.length > 0 ? { content: delta } : {};
    if (this.parser === undefined) return {};
    return this.keep(this.parser.extractToolCallsStreaming(previous, this.content, delta));
  }

  /** The output ended: what was held back, or the JSON form's calls. */
  end(): { content?: string; toolCalls?: DeltaToolCall[] } {
    if (this.parser !== undefined) return this.keep(this.parser.flush());
    if (this.plan.read === 'none') return {};
    const { toolCalls, content } = readToolCalls(this.plan, this.content);
    if (toolCalls.length === 0) return content ? { content } : {};
    this.called = true;
    return { toolCalls: toolCalls.map((call, index) => ({ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } })) };
  }

  private keep(delta: { content?: string; toolCalls?: readonly DeltaToolCall[] } | null): { content?: string; toolCalls?: DeltaToolCall[] } {
    if (delta === null) return {};
    let toolCalls = delta.toolCalls ? [...delta.toolCalls] : undefined;
    if (toolCalls !== undefined && !this.plan.parallelToolCalls) toolCalls = toolCalls.filter((call) => call.index === 0);
    if (toolCalls !== undefined && toolCalls.length > 0) this.called = true;
    return { ...(delta.content ? { content: delta.content } : {}), ...(toolCalls && toolCalls.length > 0 ? { toolCalls } : {}) };
  }
}

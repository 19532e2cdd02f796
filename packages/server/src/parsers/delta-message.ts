/**
 * What a parser returns for one streamed delta, in OpenAI's streaming shape (`choices[].delta`): new content, new
 * reasoning text, and tool-call fragments. A tool call's first fragment carries its `index`, `id`, `type` and
 * `function.name` (with empty arguments); later ones carry only `index` and a piece of `function.arguments`.
 */
export interface DeltaMessage {
  readonly content?: string;
  readonly reasoningContent?: string;
  readonly toolCalls?: readonly DeltaToolCall[];
}

export interface DeltaToolCall {
  readonly index: number;
  readonly id?: string;
  readonly type?: 'function';
  readonly function: { readonly name?: string; readonly arguments?: string };
}

/** One complete tool call, as OpenAI's `message.tool_calls[]`. `arguments` is the JSON text the model wrote. */
export interface ToolCall {
  readonly id: string;
  readonly type: 'function';
  readonly function: { readonly name: string; readonly arguments: string };
}

/** A message's delta, or null when there is nothing new to send. */
export function deltaOrNull(delta: { content?: string; reasoningContent?: string; toolCalls?: DeltaToolCall[] }): DeltaMessage | null {
  const message: { content?: string; reasoningContent?: string; toolCalls?: DeltaToolCall[] } = {};
  if (delta.content) message.content = delta.content;
  if (delta.reasoningContent) message.reasoningContent = delta.reasoningContent;
  if (delta.toolCalls && delta.toolCalls.length > 0) message.toolCalls = delta.toolCalls;
  return Object.keys(message).length === 0 ? null : message;
}

/** The length of the longest suffix of `text` that is a proper prefix of `marker`: text held back in a stream. */
export function partialMarkerLength(text: string, marker: string): number {
  for (let length = Math.min(marker.length - 1, text.length); length > 0; length -= 1) {
    if (text.endsWith(marker.slice(0, length))) return length;
  }
  return 0;
}

import { randomUUID } from 'node:crypto';
import { type DeltaMessage, type DeltaToolCall, deltaOrNull, type ToolCall } from './delta-message';
import type { ScannedCall } from './json-scan';

/** A whole output's tool calls (vLLM's `ExtractedToolCallInformation`). */
export interface ExtractedToolCalls {
  readonly toolsCalled: boolean;
  readonly toolCalls: readonly ToolCall[];
  /** The text before the calls; the whole output when no well-formed call was found; null when empty. */
  readonly content: string | null;
}

/** What a parser reads from an output so far: the content that is surely not a call, and the calls' objects. */
export interface ToolCallScan {
  readonly content: string;
  readonly calls: readonly ScannedCall[];
}

/** A call the parser found malformed (not a JSON object where one must be): the output is then plain content. */
export const malformedCall: ScannedCall = Object.freeze({ name: undefined, argumentsStart: undefined, argumentsEnd: -1, end: -1 });

/**
 * One model family's tool-call format, after vLLM's `ToolParser`: a whole-output method, and a streaming method that
 * takes the previous text, the current text and the delta and returns a delta in OpenAI's shape. One instance per
 * request: the streaming method remembers what it has sent.
 *
 * Both methods read the output with the family's `scan`, so they agree: for a well-formed output, the streamed
 * content and each call's name and argument fragments, joined, equal what the whole-output method returns. A
 * stream holds back text that may begin a marker (`<tool_` before `<tool_call>`) until it knows; `flush` sends what
 * was held when the output ends. `arguments` is the JSON text exactly as the model wrote it.
 */
export abstract class ToolParser {
  private emittedContent = 0;
  private readonly sent: Array<{ id: string; nameSent: boolean; argumentsSent: number }> = [];
  private lastText = '';

  /** Reads `text`; `final` when the output is complete (nothing is held back then). */
  protected abstract scan(text: string, final: boolean): ToolCallScan;

  extractToolCalls(output: string): ExtractedToolCalls {
    const { content, calls } = this.scan(output, true);
    const wellFormed =
      calls.length > 0 &&
      calls.every((call) => call.end >= 0 && call.name !== undefined && call.argumentsStart !== undefined && call.argumentsEnd >= 0 && parses(output.slice(call.argumentsStart, call.argumentsEnd)));
    if (!wellFormed) return { toolsCalled: false, toolCalls: [], content: output };
    return {
      toolsCalled: true,
      toolCalls: calls.map((call) => ({
        id: toolCallId(),
        type: 'function',
        function: { name: call.name!, arguments: output.slice(call.argumentsStart, call.argumentsEnd) },
      })),
      content: content.length > 0 ? content : null,
    };
  }

  extractToolCallsStreaming(_previousText: string, currentText: string, _deltaText: string): DeltaMessage | null {
    this.lastText = currentText;
    return this.diff(this.scan(currentText, false), currentText);
  }

  /** The output ended: what the stream held back. */
  flush(): DeltaMessage | null {
    return this.diff(this.scan(this.lastText, true), this.lastText);
  }

  private diff(scan: ToolCallScan, text: string): DeltaMessage | null {
    const content = scan.content.slice(this.emittedContent);
    this.emittedContent = Math.max(this.emittedContent, scan.content.length);
    const toolCalls: DeltaToolCall[] = [];
    scan.calls.forEach((call, index) => {
      if (call.name === undefined) return;
      const state = (this.sent[index] ??= { id: toolCallId(), nameSent: false, argumentsSent: 0 });
      if (!state.nameSent) {
        toolCalls.push({ index, id: state.id, type: 'function', function: { name: call.name, arguments: '' } });
        state.nameSent = true;
      }
      if (call.argumentsStart === undefined) return;
      const available = text.slice(call.argumentsStart, call.argumentsEnd < 0 ? text.length : call.argumentsEnd);
      if (available.length > state.argumentsSent) {
        toolCalls.push({ index, function: { arguments: available.slice(state.argumentsSent) } });
        state.argumentsSent = available.length;
      }
    });
    return deltaOrNull({ content, toolCalls });
  }
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** vLLM's `chatcmpl-tool-` ids. */
export function toolCallId(): string {
  return `chatcmpl-tool-${randomUUID().replaceAll('-', '')}`;
}

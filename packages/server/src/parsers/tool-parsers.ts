import { partialMarkerLength } from './delta-message';
import { type ScannedCall, scanCallObject, skipWhitespace } from './json-scan';
import { malformedCall, type ToolCallScan, ToolParser } from './tool-parser';

/**
 * Hermes, as Qwen2.5 and Qwen3 write calls: `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`, one
 * block per call; the content is the text before the first block.
 */
export class HermesToolParser extends ToolParser {
  static readonly start = '<tool_call>';
  static readonly end = '</tool_call>';

  protected scan(text: string, final: boolean): ToolCallScan {
    const { start } = HermesToolParser;
    const first = text.indexOf(start);
    if (first < 0) return { content: text.slice(0, text.length - (final ? 0 : partialMarkerLength(text, start))), calls: [] };
    const calls: ScannedCall[] = [];
    let at = first;
    while (at >= 0) {
      const objectStart = skipWhitespace(text, at + start.length);
      if (objectStart >= text.length) break;
      if (text[objectStart] !== '{') {
        calls.push(malformedCall);
        break;
      }
      const call = scanCallObject(text, objectStart, ['arguments']);
      calls.push(call);
      if (call.end < 0) break;
      at = text.indexOf(start, call.end);
    }
    return { content: text.slice(0, first), calls };
  }
}

/**
 * Llama 3.1+'s JSON calls: the output is `{"name": "f", "parameters": {...}}` (or `arguments`), optionally after
 * `<|python_tag|>`, several separated by `;`. An output that does not start with one is plain content.
 */
export class Llama3JsonToolParser extends ToolParser {
  static readonly pythonTag = '<|python_tag|>';

  protected scan(text: string, final: boolean): ToolCallScan {
    let start = skipWhitespace(text, 0);
    const { pythonTag } = Llama3JsonToolParser;
    if (text.startsWith(pythonTag, start)) start = skipWhitespace(text, start + pythonTag.length);
    else if (!final && (start === text.length || pythonTag.startsWith(text.slice(start)))) return { content: '', calls: [] };
    if (text[start] !== '{') return { content: final || start < text.length ? text : '', calls: [] };
    const calls: ScannedCall[] = [];
    while (start < text.length && text[start] === '{') {
      const call = scanCallObject(text, start, ['parameters', 'arguments']);
      calls.push(call);
      if (call.end < 0) break;
      const next = skipWhitespace(text, call.end);
      if (text[next] !== ';') break;
      start = skipWhitespace(text, next + 1);
    }
    return { content: '', calls };
  }
}

/** Mistral's `[TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]`; the content is the text before the marker. */
export class MistralToolParser extends ToolParser {
  static readonly marker = '[TOOL_CALLS]';

  protected scan(text: string, final: boolean): ToolCallScan {
    const { marker } = MistralToolParser;
    const first = text.indexOf(marker);
    if (first < 0) return { content: text.slice(0, text.length - (final ? 0 : partialMarkerLength(text, marker))), calls: [] };
    const content = text.slice(0, first);
    let index = skipWhitespace(text, first + marker.length);
    if (index >= text.length) return { content, calls: [] };
    if (text[index] !== '[') return { content, calls: [malformedCall] };
    const calls: ScannedCall[] = [];
    index = skipWhitespace(text, index + 1);
    while (index < text.length && text[index] === '{') {
      const call = scanCallObject(text, index, ['arguments']);
      calls.push(call);
      if (call.end < 0) break;
      index = skipWhitespace(text, call.end);
      if (text[index] !== ',') break;
      index = skipWhitespace(text, index + 1);
    }
    return { content, calls };
  }
}

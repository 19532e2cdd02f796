import { structuredOutputsSpec, XGrammarBackend } from '@pagoda/engine';
import { describe, expect, it } from 'vitest';
import type { DeltaMessage } from './delta-message';
import {
  createReasoningParser,
  createToolParser,
  defaultToolParserFor,
  type ReasoningParserName,
  toolCallConstraint,
  type ToolParserName,
} from './index';

/** Splits `text` at random points (a seeded generator: each seed is one reproducible chunking). */
function chunks(text: string, seed: number): string[] {
  let state = seed * 2654435761 + 1;
  const next = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const pieces: string[] = [];
  let index = 0;
  while (index < text.length) {
    const length = 1 + Math.floor(next() * (next() < 0.3 ? 1 : 9));
    pieces.push(text.slice(index, index + length));
    index += length;
  }
  return pieces;
}

interface Streamed {
  content: string;
  reasoning: string;
  calls: Array<{ id?: string; name?: string; arguments: string }>;
}

function fold(streamed: Streamed, delta: DeltaMessage | null): void {
  if (delta === null) return;
  streamed.content += delta.content ?? '';
  streamed.reasoning += delta.reasoningContent ?? '';
  for (const call of delta.toolCalls ?? []) {
    const entry = (streamed.calls[call.index] ??= { arguments: '' });
    if (call.id !== undefined) {
      expect(entry.id, 'id and name come once, in the first fragment').toBeUndefined();
      entry.id = call.id;
      entry.name = call.function.name;
    } else {
      expect(entry.name, 'argument fragments follow the name').toBeDefined();
    }
    entry.arguments += call.function.arguments ?? '';
  }
}

function streamTools(name: ToolParserName, text: string, seed: number): Streamed {
  const parser = createToolParser(name)!;
  const streamed: Streamed = { content: '', reasoning: '', calls: [] };
  let previous = '';
  for (const piece of chunks(text, seed)) {
    const current = previous + piece;
    fold(streamed, parser.extractToolCallsStreaming(previous, current, piece));
    previous = current;
  }
  fold(streamed, parser.flush());
  return streamed;
}

const weather = '{"city": "Paris", "days": [1, 2], "note": "a \\"quoted\\" }"}';

const toolCases: Array<[ToolParserName, string, string | null, Array<{ name: string; arguments: string }>]> = [
  ['hermes', `Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": ${weather}}\n</tool_call>`, 'Let me check.\n', [{ name: 'get_weather', arguments: weather }]],
  [
    'hermes',
    '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"arguments": {"x": [true, null]}, "name": "b"}\n</tool_call>',
    null,
    [{ name: 'a', arguments: '{}' }, { name: 'b', arguments: '{"x": [true, null]}' }],
  ],
  ['hermes', 'No tools here, only <tool text.', 'No tools here, only <tool text.', []],
  ['llama3_json', `<|python_tag|>{"name": "get_weather", "parameters": ${weather}}; {"name": "b", "parameters": {"k": 1.5e3}}`, null, [{ name: 'get_weather', arguments: weather }, { name: 'b', arguments: '{"k": 1.5e3}' }]],
  ['llama3_json', '{"name": "solo", "arguments": {"q": "{;}"}}', null, [{ name: 'solo', arguments: '{"q": "{;}"}' }]],
  ['llama3_json', 'Plain answer, no call.', 'Plain answer, no call.', []],
  ['mistral', `Sure. [TOOL_CALLS][{"name": "get_weather", "arguments": ${weather}}, {"name": "b", "arguments": {"n": -2}}]`, 'Sure. ', [{ name: 'get_weather', arguments: weather }, { name: 'b', arguments: '{"n": -2}' }]],
  ['mistral', 'Just [TOOL text', 'Just [TOOL text', []],
];

describe('tool parsers', () => {
  it.each(toolCases)('%s reads a whole output: %j', (name, text, content, calls) => {
    const extracted = createToolParser(name)!.extractToolCalls(text);
    expect(extracted.toolsCalled).toBe(calls.length > 0);
    expect(extracted.content).toBe(content);
    expect(extracted.toolCalls.map((call) => ({ name: call.function.name, arguments: call.function.arguments }))).toEqual(calls);
    for (const call of extracted.toolCalls) {
      expect(call.id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
      expect(() => JSON.parse(call.function.arguments)).not.toThrow();
    }
  });

  it.each(toolCases)('%s streamed in 200 random chunkings agrees with the whole output: %j', (name, text) => {
    const whole = createToolParser(name)!.extractToolCalls(text);
    for (let seed = 0; seed < 200; seed += 1) {
      const streamed = streamTools(name, text, seed);
      expect(streamed.content).toBe(whole.content ?? '');
      expect(streamed.calls.map((call) => ({ name: call.name, arguments: call.arguments }))).toEqual(
        whole.toolCalls.map((call) => ({ name: call.function.name, arguments: call.function.arguments })),
      );
    }
  });

  it('treats a malformed call as content, whole', () => {
    expect(createToolParser('hermes')!.extractToolCalls('<tool_call>\nnot json\n</tool_call>')).toMatchObject({ toolsCalled: false, content: '<tool_call>\nnot json\n</tool_call>' });
    expect(createToolParser('hermes')!.extractToolCalls('<tool_call>\n{"name": "f", "arguments": {"a": ')).toMatchObject({ toolsCalled: false });
    expect(createToolParser('unknown')).toBeUndefined();
  });

  it('picks the default parser from a chat template where it is recognisable', () => {
    expect(defaultToolParserFor('{% for tool in tools %}<tool_call>{{ tool }}</tool_call>{% endfor %}')).toBe('hermes');
    expect(defaultToolParserFor('{{ "[TOOL_CALLS]" }}')).toBe('mistral');
    expect(defaultToolParserFor('<|start_header_id|>ipython<|end_header_id|> {"name": x, "parameters": y}')).toBe('llama3_json');
    expect(defaultToolParserFor('{{ messages }}')).toBeUndefined();
    expect(defaultToolParserFor(undefined)).toBeUndefined();
  });
});

const reasoningCases: Array<[ReasoningParserName, string, string | null, string | null]> = [
  ['qwen3', '<think>\nLet me see.\n</think>\n\nThe answer is 4.', '\nLet me see.\n', '\n\nThe answer is 4.'],
  ['qwen3', 'No thinking at all.', null, 'No thinking at all.'],
  ['qwen3', '<think>cut off before the end', 'cut off before the end', null],
  ['qwen3', '<think></think>', null, null],
  ['deepseek_r1', 'Hmm, < not </think> ... </thin. </think>Answer', 'Hmm, < not ', ' ... </thin. </think>Answer'],
  ['deepseek_r1', '<think>reasoning only', 'reasoning only', null],
  ['deepseek_r1', 'Thinking.</think>Done.', 'Thinking.', 'Done.'],
  // A think block the prompt opened and the model closed at once: the closing tag is not content.
  ['qwen3', '</think>{"a": 1}', null, '{"a": 1}'],
];

describe('reasoning parsers', () => {
  it.each(reasoningCases)('%s splits a whole output: %j', (name, text, reasoningContent, content) => {
    expect(createReasoningParser(name)!.extractReasoningContent(text)).toEqual({ reasoningContent, content });
  });

  it.each(reasoningCases)('%s streamed in 200 random chunkings agrees with the whole output: %j', (name, text) => {
    const whole = createReasoningParser(name)!.extractReasoningContent(text);
    for (let seed = 0; seed < 200; seed += 1) {
      const parser = createReasoningParser(name)!;
      const streamed: Streamed = { content: '', reasoning: '', calls: [] };
      let previous = '';
      for (const piece of chunks(text, seed)) {
        fold(streamed, parser.extractReasoningContentStreaming(previous, previous + piece, piece));
        previous += piece;
      }
      fold(streamed, parser.flush());
      expect(streamed.reasoning).toBe(whole.reasoningContent ?? '');
      expect(streamed.content).toBe(whole.content ?? '');
    }
  });
});

describe('toolCallConstraint: the structural tag that forces calls', () => {
  const tools = [
    { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { enum: ['Paris', 'Rome'] } }, required: ['city'] } } },
    { type: 'function' as const, function: { name: 'noop' } },
  ];
  // A vocabulary of single ASCII characters (id = code point) and an end token, so text is fed one character a token.
  const vocabulary = { encodedVocab: [...Array.from({ length: 128 }, (_, code) => (code === 0 ? '' : String.fromCharCode(code))), '<eos>'], vocabType: 'raw' as const, prependSpaceInTokenization: false };
  const eos = 128;
  let backend: XGrammarBackend | undefined;

  async function accepts(parser: ToolParserName, text: string, toolChoice: Parameters<typeof toolCallConstraint>[2], parallelToolCalls = true): Promise<boolean> {
    backend ??= await XGrammarBackend.create({ vocabulary, stopTokenIds: [eos] });
    const spec = structuredOutputsSpec(toolCallConstraint(parser, tools, toolChoice, { parallelToolCalls }));
    const grammar = await backend.compile(JSON.stringify(spec), spec);
    const ok = grammar.acceptTokens([...text].map((character) => character.charCodeAt(0))) && grammar.acceptTokens([eos]) && grammar.isTerminated();
    grammar.dispose();
    return ok;
  }

  it.each([
    ['hermes', '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'],
    ['llama3_json', '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "noop", "parameters": {}}'],
    ['mistral', '[TOOL_CALLS][{"name": "noop", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]'],
  ] as Array<[ToolParserName, string]>)('%s: accepts well-formed calls that its parser reads back', async (parser, text) => {
    expect(await accepts(parser, text, 'required')).toBe(true);
    expect(createToolParser(parser)!.extractToolCalls(text).toolsCalled).toBe(true);
  });

  it('refuses no call, an unknown function, arguments off the schema, and a second call when parallel calls are off', async () => {
    expect(await accepts('hermes', 'Just text.', 'required')).toBe(false);
    expect(await accepts('hermes', '<tool_call>\n{"name": "other", "arguments": {}}\n</tool_call>', 'required')).toBe(false);
    expect(await accepts('hermes', '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>', 'required')).toBe(false);
    const one = '<tool_call>\n{"name": "noop", "arguments": {}}\n</tool_call>';
    expect(await accepts('hermes', `${one}\n${one}`, 'required', false)).toBe(false);
    expect(await accepts('hermes', one, { type: 'function', function: { name: 'get_weather' } })).toBe(false);
    expect(() => toolCallConstraint('hermes', tools, { type: 'function', function: { name: 'missing' } })).toThrow(RangeError);
  });
});

import { describe, expect, it } from 'vitest';
import { parseServerSentEvents } from './sse';

async function events(chunks: Array<string | Uint8Array>): Promise<string[]> {
  const encoder = new TextEncoder();
  async function* body() {
    for (const chunk of chunks) yield typeof chunk === 'string' ? encoder.encode(chunk) : chunk;
  }
  const out: string[] = [];
  for await (const event of parseServerSentEvents(body())) out.push(event);
  return out;
}

describe('parseServerSentEvents', () => {
  it('yields the data of each event, through [DONE]', async () => {
    expect(await events(['data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n'])).toEqual(['{"a":1}', '{"a":2}', '[DONE]']);
  });

  it('reassembles events and UTF-8 characters split across chunks', async () => {
    const bytes = new TextEncoder().encode('data: {"text":"é"}\n\n');
    const split = bytes.indexOf(0xc3) + 1; // inside the two bytes of é
    expect(await events(['da', 'ta: {"te', 'xt":"x"}\n', '\n', bytes.slice(0, split), bytes.slice(split)])).toEqual([
      '{"text":"x"}',
      '{"text":"é"}',
    ]);
  });

  it('accepts CRLF and CR line endings, even a CRLF split between chunks', async () => {
    expect(await events(['data: 1\r\n\r\ndata: 2\r', '\n\r\ndata: 3\r\r'])).toEqual(['1', '2', '3']);
  });

  it('ignores comments and other fields, and joins multi-line data', async () => {
    expect(await events([': keep-alive\n\nevent: message\nid: 7\ndata: line one\ndata: line two\n\n'])).toEqual(['line one\nline two']);
  });

  it('yields a last event that the stream ends without a blank line', async () => {
    expect(await events(['data: {"a":1}\n\ndata: [DONE]'])).toEqual(['{"a":1}', '[DONE]']);
  });

  it('keeps the value exact after the single optional space', async () => {
    expect(await events(['data:x\n\ndata:  two spaces\n\n'])).toEqual(['x', ' two spaces']);
  });
});

import { fixturePath, readFixtureJson } from '@pagoda/fixtures';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from './text-tokenizer';

interface TokenizerFixture {
  cases: Array<{
    text: string;
    ids_with_special: number[];
    ids_no_special: number[];
    decode_skip_special: string;
    decode_keep_special: string;
  }>;
  chat?: Array<{ messages: Array<{ role: string; content: string }>; kwargs: Record<string, unknown>; prompt: string; ids: number[] }>;
}

describe.each([
  { checkpoint: 'tiny-llama', oracle: 'llama2.json' },
  { checkpoint: 'tiny-qwen2', oracle: 'qwen3.json' },
])('TextTokenizer($checkpoint) against the Rust tokenizers library', ({ checkpoint, oracle }) => {
  const fixture = readFixtureJson<TokenizerFixture>('tokenizers', oracle);
  const load = () => TextTokenizer.load(fixturePath(checkpoint));

  it('encodes with and without special tokens', async () => {
    const tokenizer = await load();
    for (const testCase of fixture.cases) {
      expect({ text: testCase.text, ids: tokenizer.encode(testCase.text) }).toEqual({ text: testCase.text, ids: testCase.ids_with_special });
      expect({ text: testCase.text, ids: tokenizer.encode(testCase.text, { addSpecialTokens: false }) }).toEqual({
        text: testCase.text,
        ids: testCase.ids_no_special,
      });
    }
  });

  it('decodes with special tokens skipped and kept', async () => {
    const tokenizer = await load();
    for (const testCase of fixture.cases) {
      expect(tokenizer.decode(testCase.ids_with_special)).toBe(testCase.decode_skip_special);
      expect(tokenizer.decode(testCase.ids_with_special, { skipSpecialTokens: false })).toBe(testCase.decode_keep_special);
    }
  });
});

describe('TextTokenizer.tokenBytes: the raw bytes of each token, as logprobs report them', () => {
  it.each([
    { checkpoint: 'tiny-qwen2', oracle: 'qwen3.json', expected: (text: string) => text.normalize('NFC') },
    { checkpoint: 'tiny-llama', oracle: 'llama2.json', expected: (text: string) => (text === '' ? '' : ` ${text}`) },
  ])('rebuilds every $oracle text from its tokens’ bytes ($checkpoint)', async ({ checkpoint, oracle, expected }) => {
    const tokenizer = await TextTokenizer.load(fixturePath(checkpoint));
    const { cases } = readFixtureJson<TokenizerFixture>('tokenizers', oracle);
    // (Llama's legacy SentencePiece prepends another "▁" after an added token such as a literal <s>: left out.)
    for (const { text } of cases.filter((testCase) => checkpoint !== 'tiny-llama' || !/<\/?s>/.test(testCase.text))) {
      const ids = tokenizer.encode(text, { addSpecialTokens: false });
      const bytes = Buffer.from(ids.flatMap((id) => tokenizer.tokenBytes(id)));
      expect({ text, bytes: bytes.toString('utf8') }).toEqual({ text, bytes: expected(text) });
    }
    // A character split over byte tokens: each token's own bytes, not U+FFFD's.
    const split = tokenizer.encode('𓀀', { addSpecialTokens: false });
    expect(split.length).toBeGreaterThan(1);
    expect(split.map((id) => tokenizer.tokenBytes(id)).every((bytes) => !Buffer.from(bytes).equals(Buffer.from('\uFFFD')))).toBe(true);
  });
});

describe('TextTokenizer chat templates', () => {
  const { chat } = readFixtureJson<TokenizerFixture>('tokenizers', 'qwen3.json');

  it.each(chat!.map((testCase, index) => ({ ...testCase, index })))(
    'renders Qwen3 conversation $index (kwargs $kwargs) as transformers does',
    async ({ messages, kwargs, prompt, ids }) => {
      const tokenizer = await TextTokenizer.load(fixturePath('tiny-qwen2'));
      const rendered = tokenizer.applyChatTemplate(messages, { templateKwargs: kwargs });
      expect(rendered).toBe(prompt);
      expect(tokenizer.encode(rendered, { addSpecialTokens: false })).toEqual(ids);
    },
  );

  it('refuses a chat on a model without a template, saying what to do', async () => {
    const tokenizer = await TextTokenizer.load(fixturePath('tiny-llama'));
    expect(tokenizer.hasChatTemplate).toBe(false);
    expect(() => tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(/has no chat template/);
  });

  it('knows the special tokens from tokenizer_config.json', async () => {
    const qwen = await TextTokenizer.load(fixturePath('tiny-qwen2'));
    expect(qwen.eosTokenId).toBe(151645);
    const llama = await TextTokenizer.load(fixturePath('tiny-llama'));
    expect([llama.bosTokenId, llama.eosTokenId]).toEqual([1, 2]);
  });
});

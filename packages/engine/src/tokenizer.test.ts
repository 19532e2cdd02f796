import { fixturePath, readFixtureJson } from '@pagoda/fixtures';
import { describe, expect, it } from 'vitest';
import { loadTokenizer } from './index';

interface TokenizerFixture {
  cases: Array<{ text: string; ids_with_special: number[]; decode_skip_special: string }>;
}

describe.each([
  { checkpoint: 'tiny-llama', oracle: 'llama2.json' },
  { checkpoint: 'tiny-qwen2', oracle: 'qwen3.json' },
])('loadTokenizer($checkpoint)', ({ checkpoint, oracle }) => {
  const { cases } = readFixtureJson<TokenizerFixture>('tokenizers', oracle);

  it('encodes the oracle strings to the ids of the Rust tokenizers library', async () => {
    const tokenizer = await loadTokenizer(fixturePath(checkpoint));
    const mismatches = cases.filter(
      (testCase) => JSON.stringify(tokenizer.encode(testCase.text).ids) !== JSON.stringify(testCase.ids_with_special),
    );
    expect(mismatches.map((testCase) => testCase.text)).toEqual([]);
  });
});

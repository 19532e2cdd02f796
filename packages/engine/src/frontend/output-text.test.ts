import { checkpointNames, fixturePath, readFixtureJson } from '@pagoda/fixtures';
import { describe, expect, it } from 'vitest';
import { IncrementalDetokenizer } from './incremental-detokenizer';
import { OutputText } from './output-text';
import { TextTokenizer } from './text-tokenizer';

interface Reference {
  prompts: Array<{ ids: number[]; greedy: { ids: number[]; text: string; text_in_context: string } }>;
}

describe.each(checkpointNames)('IncrementalDetokenizer on %s', (checkpoint) => {
  const reference = readFixtureJson<Reference>(checkpoint, 'reference.json');

  it('streams exactly the reference text_in_context after each prompt, one token at a time', async () => {
    const tokenizer = await TextTokenizer.load(fixturePath(checkpoint));
    for (const prompt of reference.prompts) {
      const detokenizer = new IncrementalDetokenizer(tokenizer, prompt.ids);
      const deltas = prompt.greedy.ids.map((tokenId) => detokenizer.push(tokenId));
      expect(deltas.join('')).toBe(prompt.greedy.text_in_context);
      expect(tokenizer.decode(prompt.greedy.ids)).toBe(prompt.greedy.text);
    }
  });
});

describe('IncrementalDetokenizer and multi-byte characters', () => {
  it('holds back a character split across byte tokens until it is complete', async () => {
    const tokenizer = await TextTokenizer.load(fixturePath('tiny-llama'));
    const ids = tokenizer.encode('🦙 ok', { addSpecialTokens: false });
    expect(ids.length).toBe(6); // '▁', then the emoji's four bytes as byte-fallback tokens, then '▁ok'
    const detokenizer = new IncrementalDetokenizer(tokenizer, tokenizer.encode('Say:'));
    const deltas = ids.map((tokenId) => detokenizer.push(tokenId));
    expect(deltas.join('')).toBe(' 🦙 ok');
    expect(deltas.slice(1, 4)).toEqual(['', '', '']); // the first three bytes are not a character yet
    for (const delta of deltas) expect(delta).not.toContain('\uFFFD');
  });
});

describe('OutputText stop strings', () => {
  const setup = async (text: string, options: ConstructorParameters<typeof OutputText>[2]) => {
    const tokenizer = await TextTokenizer.load(fixturePath('tiny-qwen2'));
    const prompt = tokenizer.encode('Q:', { addSpecialTokens: false });
    const output = new OutputText(tokenizer, prompt, options);
    const deltas = tokenizer.encode(text, { addSpecialTokens: false }).map((tokenId) => output.push(tokenId));
    return { output, deltas, streamed: deltas.map((delta) => delta.delta).join('') };
  };

  it('ends at the stop string and cuts it from the text', async () => {
    const { output, streamed, deltas } = await setup(' one two three four', { stop: [' three'] });
    expect(output.text).toBe(' one two');
    expect(streamed).toBe(' one two');
    expect(output.stoppedAt).toBe(' three');
    expect(deltas.filter((delta) => delta.stoppedAt !== undefined)).toHaveLength(2); // the stopping token, then later ones
  });

  it('keeps the stop string with includeStopStrInOutput', async () => {
    const { output } = await setup(' one two three four', { stop: [' three'], includeStopStrInOutput: true });
    expect(output.text).toBe(' one two three');
  });

  it('never streams part of a stop string, and releases held text when it cannot become one', async () => {
    const { deltas, output } = await setup(' alpha beta gamma', { stop: [' beta delta'] });
    const streamedSoFar: string[] = [];
    let acc = '';
    for (const delta of deltas) {
      acc += delta.delta;
      streamedSoFar.push(acc);
    }
    expect(streamedSoFar.some((text) => text.endsWith(' beta'))).toBe(false);
    expect(acc + output.flush()).toBe(' alpha beta gamma');
    expect(output.stoppedAt).toBeUndefined();
  });

  it('picks the earliest of several stop strings', async () => {
    const { output } = await setup(' red green blue', { stop: [' blue', ' green'] });
    expect(output.text).toBe(' red');
    expect(output.stoppedAt).toBe(' green');
  });
});

import { fixturePath } from '@pagoda/fixtures';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { reasoningEndedIn } from './reasoning';
import { xgrammarVocabulary } from './tokenizer-info';

const tokenizerJson = (checkpoint: string) => JSON.parse(readFileSync(fixturePath(checkpoint, 'tokenizer.json'), 'utf8'));

describe('xgrammarVocabulary', () => {
  it("reads Qwen's byte-level vocabulary, added tokens included, padded to the model's 151,936 ids", () => {
    const vocabulary = xgrammarVocabulary(tokenizerJson('tiny-qwen2'), 151_936);
    expect(vocabulary.vocabType).toBe('byte_level');
    expect(vocabulary.prependSpaceInTokenization).toBe(false);
    expect(vocabulary.encodedVocab).toHaveLength(151_936);
    expect(vocabulary.encodedVocab[151_668]).toBe('</think>');
    expect(vocabulary.encodedVocab[151_935]).toBe('');
  });

  it("reads Llama 2's SentencePiece vocabulary as byte fallback with a prepended space", () => {
    const vocabulary = xgrammarVocabulary(tokenizerJson('tiny-llama'), 32_000);
    expect(vocabulary.vocabType).toBe('byte_fallback');
    expect(vocabulary.prependSpaceInTokenization).toBe(true);
    expect(vocabulary.encodedVocab[2]).toBe('</s>');
  });
});

describe('reasoningEndedIn', () => {
  const markers = { startTokenId: 10, endTokenId: 11 };
  it('ends when the last end marker follows the last start marker', () => {
    expect(reasoningEndedIn([1, 10, 2, 11, 3], markers)).toBe(true);
    expect(reasoningEndedIn([10, 11, 10, 2], markers)).toBe(false);
    expect(reasoningEndedIn([1, 2, 3], markers)).toBe(false);
    expect(reasoningEndedIn([11], { startTokenId: undefined, endTokenId: 11 })).toBe(true);
  });
});

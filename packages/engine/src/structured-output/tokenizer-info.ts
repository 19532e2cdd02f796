/** What XGrammar's `TokenizerInfo` is built from: every token's text as the tokenizer stores it, and how to decode it. */
export interface XGrammarVocabulary {
  /** Index = token id, `vocabSize` entries; ids the tokenizer does not have are empty (XGrammar never allows them). */
  readonly encodedVocab: string[];
  /** `byte_level` (GPT-2 style: Qwen, Llama 3), `byte_fallback` (SentencePiece with `<0x..>` tokens: Llama 2) or `raw`. */
  readonly vocabType: 'byte_level' | 'byte_fallback' | 'raw';
  /** SentencePiece-style tokenizers put a space (`▁`) before the text; XGrammar strips it from the first token. */
  readonly prependSpaceInTokenization: boolean;
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number> | Array<[string, number]> };
  added_tokens?: Array<{ id: number; content: string }>;
  decoder?: TokenizerPart | null;
  normalizer?: TokenizerPart | null;
  pre_tokenizer?: TokenizerPart | null;
}

interface TokenizerPart {
  type?: string;
  decoders?: TokenizerPart[];
  normalizers?: TokenizerPart[];
  pretokenizers?: TokenizerPart[];
  prepend?: string;
  prepend_scheme?: string;
  add_prefix_space?: boolean;
}

/**
 * Reads XGrammar's view of a Hugging Face `tokenizer.json`, as its Python `TokenizerInfo.from_huggingface` does:
 * the decoder tells the vocabulary's encoding (a `ByteLevel` decoder, a `ByteFallback` one, else raw text), the
 * normalizer or pre-tokenizer whether a space is prepended. The vocabulary is padded to the model's `vocabSize`
 * (its logits' width), which is often larger than the tokenizer's.
 */
export function xgrammarVocabulary(tokenizer: TokenizerJson, vocabSize: number): XGrammarVocabulary {
  const encodedVocab = new Array<string>(vocabSize).fill('');
  const vocab = tokenizer.model?.vocab;
  if (Array.isArray(vocab)) {
    // Unigram: [token, score] in id order.
    vocab.forEach(([token], tokenId) => {
      if (tokenId < vocabSize) encodedVocab[tokenId] = token;
    });
  } else if (vocab !== undefined) {
    for (const [token, tokenId] of Object.entries(vocab)) if (tokenId < vocabSize) encodedVocab[tokenId] = token;
  }
  for (const added of tokenizer.added_tokens ?? []) if (added.id < vocabSize) encodedVocab[added.id] = added.content;
  const decoders = flatten(tokenizer.decoder, 'decoders');
  const vocabType = decoders.some((part) => part.type === 'ByteLevel')
    ? 'byte_level'
    : decoders.some((part) => part.type === 'ByteFallback')
      ? 'byte_fallback'
      : 'raw';
  const prependSpaceInTokenization =
    flatten(tokenizer.normalizer, 'normalizers').some((part) => part.type === 'Prepend' && part.prepend === '▁') ||
    flatten(tokenizer.pre_tokenizer, 'pretokenizers').some(
      (part) => part.type === 'Metaspace' && (part.prepend_scheme === 'always' || part.prepend_scheme === 'first' || part.add_prefix_space === true),
    );
  return { encodedVocab, vocabType, prependSpaceInTokenization };
}

function flatten(part: TokenizerPart | null | undefined, children: 'decoders' | 'normalizers' | 'pretokenizers'): TokenizerPart[] {
  if (part == null) return [];
  const nested = part[children];
  return Array.isArray(nested) ? nested.flatMap((child) => flatten(child, children)) : [part];
}

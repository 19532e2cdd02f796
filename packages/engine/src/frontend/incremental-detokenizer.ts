import type { TextTokenizer } from './text-tokenizer';

/** Tokens of the prompt kept as context, so the first generated token decodes as it reads after the prompt. */
const promptContextTokens = 5;

/**
 * Turns a stream of token ids into a stream of text that never contains broken UTF-8. It decodes a short window of
 * tokens twice, with and without the newest ones, and emits the difference once it no longer ends in a
 * replacement character (an incomplete multi-byte sequence):
 *
 * ```
 * tokens   … p3 p4 | o1 o2 | o3          prefixOffset ↑  readOffset ↑
 * text     decode(p3 … o3) − decode(p3 … o2)  →  what o3 adds
 * ```
 *
 * Starting the window inside the prompt makes the first token read as it does in context (" Mur", not "Mur").
 */
export class IncrementalDetokenizer {
  private readonly tokens: number[];
  private prefixOffset: number;
  private readOffset: number;

  constructor(
    private readonly tokenizer: TextTokenizer,
    promptTokenIds: readonly number[],
    private readonly skipSpecialTokens = true,
  ) {
    this.tokens = promptTokenIds.slice(-promptContextTokens);
    this.prefixOffset = 0;
    this.readOffset = this.tokens.length;
  }

  /** Adds one token; returns the text it completes (often all of it, sometimes nothing yet). */
  push(tokenId: number): string {
    this.tokens.push(tokenId);
    const options = { skipSpecialTokens: this.skipSpecialTokens };
    const prefixText = this.tokenizer.decode(this.tokens.slice(this.prefixOffset, this.readOffset), options);
    const fullText = this.tokenizer.decode(this.tokens.slice(this.prefixOffset), options);
    if (fullText.length <= prefixText.length || fullText.endsWith('\uFFFD')) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.tokens.length;
    // The window only needs the last few tokens: drop the rest so decoding stays O(1) per token.
    if (this.prefixOffset > 64) {
      this.tokens.splice(0, this.prefixOffset);
      this.readOffset -= this.prefixOffset;
      this.prefixOffset = 0;
    }
    return fullText.slice(prefixText.length);
  }
}

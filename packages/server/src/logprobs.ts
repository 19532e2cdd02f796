import type { SampledTokenLogprobs } from '@pagoda/engine';
import type { ServedEngine } from './generation';

type Tokenizer = ServedEngine['context']['tokenizer'];

/** The text of one token as the API shows it. */
function tokenText(tokenizer: Tokenizer, tokenId: number): string {
  return tokenizer.decode([tokenId], { skipSpecialTokens: false });
}

/** A token of the legacy format: its id, and its logprobs when it was scored (null: the prompt's first token). */
export interface LegacyToken {
  readonly tokenId: number;
  readonly logprobs: SampledTokenLogprobs | null;
}

export interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

/**
 * The legacy completions format: tokens, token_logprobs, top_logprobs (dicts of at most `topCount`) and text
 * offsets counted from `startOffset` (an echoed prompt's tokens come first, its first token unscored: null).
 */
export function completionLogprobs(tokenizer: Tokenizer, entries: readonly LegacyToken[], startOffset: number, topCount = Infinity) {
  let offset = startOffset;
  const result: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const { tokenId, logprobs } of entries) {
    const text = tokenText(tokenizer, tokenId);
    result.tokens.push(text);
    result.token_logprobs.push(logprobs?.logprob ?? null);
    result.top_logprobs.push(logprobs === null ? null : Object.fromEntries(logprobs.top.slice(0, topCount).map((top) => [tokenText(tokenizer, top.tokenId), top.logprob])));
    result.text_offset.push(offset);
    offset += text.length;
  }
  return { logprobs: result, end: offset };
}

/**
 * vLLM's `prompt_logprobs`: per prompt token, null for the first, else a dict from token id to its logprob, rank and
 * text, holding the prompt token itself and the top alternatives at that position.
 */
export function promptLogprobsField(tokenizer: Tokenizer, promptLogprobs: ReadonlyArray<SampledTokenLogprobs | null> | undefined) {
  if (promptLogprobs === undefined) return null;
  return promptLogprobs.map((entry) => {
    if (entry === null) return null;
    const field: Record<string, { logprob: number; rank: number | null; decoded_token: string }> = {};
    entry.top.forEach((top, index) => (field[top.tokenId] = { logprob: top.logprob, rank: index + 1, decoded_token: tokenText(tokenizer, top.tokenId) }));
    field[entry.tokenId] = { logprob: entry.logprob, rank: entry.rank, decoded_token: tokenText(tokenizer, entry.tokenId) };
    return field;
  });
}

/** The chat format: per token, its text, logprob, raw bytes (a split character's own bytes) and the top alternatives. */
export function chatLogprobs(tokenizer: Tokenizer, logprobs: readonly SampledTokenLogprobs[]) {
  const describe = (tokenId: number, logprob: number) => {
    return { token: tokenText(tokenizer, tokenId), logprob, bytes: tokenizer.tokenBytes(tokenId) };
  };
  return logprobs.map((entry) => ({
    ...describe(entry.tokenId, entry.logprob),
    top_logprobs: entry.top.map((top) => describe(top.tokenId, top.logprob)),
  }));
}

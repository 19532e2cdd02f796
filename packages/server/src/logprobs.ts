import type { SampledTokenLogprobs } from '@pagoda/engine';
import type { ServedEngine } from './generation';

type Tokenizer = ServedEngine['context']['tokenizer'];

/** The text of one token as the API shows it. */
function tokenText(tokenizer: Tokenizer, tokenId: number): string {
  return tokenizer.decode([tokenId], { skipSpecialTokens: false });
}

/** The legacy completions format: tokens, token_logprobs, top_logprobs (dicts) and text offsets. */
export function completionLogprobs(tokenizer: Tokenizer, logprobs: readonly SampledTokenLogprobs[], startOffset: number) {
  let offset = startOffset;
  const result = { tokens: [] as string[], token_logprobs: [] as number[], top_logprobs: [] as Array<Record<string, number>>, text_offset: [] as number[] };
  for (const entry of logprobs) {
    const text = tokenText(tokenizer, entry.tokenId);
    result.tokens.push(text);
    result.token_logprobs.push(entry.logprob);
    result.top_logprobs.push(Object.fromEntries(entry.top.map((top) => [tokenText(tokenizer, top.tokenId), top.logprob])));
    result.text_offset.push(offset);
    offset += text.length;
  }
  return { logprobs: result, end: offset };
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

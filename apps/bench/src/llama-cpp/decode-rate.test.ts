import { describe, expect, it } from 'vitest';
import { decodeTokensPerSecond } from './decode-rate';

describe('decodeTokensPerSecond', () => {
  it('counts tokens after every stream has its first one, over the time to the last token', () => {
    // both first tokens by 1.0 s; after that 3 + 2 tokens until 2.0 s
    expect(decodeTokensPerSecond([[0.5, 1.2, 1.6, 2.0], [1.0, 1.5, 1.9]])).toEqual({ tokensPerSecond: 5, tokens: 5, windowSeconds: 1 });
  });

  it('gives 0 for no window rather than dividing by zero', () => {
    expect(decodeTokensPerSecond([[1], [1]]).tokensPerSecond).toBe(0);
    expect(decodeTokensPerSecond([]).tokensPerSecond).toBe(0);
  });
});

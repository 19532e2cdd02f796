/**
 * Decode throughput from per-stream token times (seconds, any common origin): the tokens produced after the moment
 * every stream had its first token, over the time from that moment to the last token. Prefill, including a prefill
 * split over several steps, stays out of the window, and neither engine is credited for tokens made before it.
 *
 * ```
 * stream 0: F----x----x----x          F first token, x later tokens
 * stream 1:   F---x----x----x
 *               |<--- window --->|    rate = (x's inside the window) / window
 * ```
 */
export function decodeTokensPerSecond(tokenTimes: readonly (readonly number[])[]): { tokensPerSecond: number; tokens: number; windowSeconds: number } {
  const started = tokenTimes.filter((times) => times.length > 0);
  if (started.length === 0) return { tokensPerSecond: 0, tokens: 0, windowSeconds: 0 };
  const allStarted = Math.max(...started.map((times) => times[0]!));
  const end = Math.max(...started.map((times) => times.at(-1)!));
  const tokens = started.reduce((sum, times) => sum + times.filter((time) => time > allStarted).length, 0);
  const windowSeconds = end - allStarted;
  return { tokensPerSecond: windowSeconds > 0 ? tokens / windowSeconds : 0, tokens, windowSeconds };
}

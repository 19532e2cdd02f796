/**
 * The markers of a reasoning model's thinking, as vLLM's reasoning parsers know them: Qwen3 and DeepSeek-R1 both
 * think between `<think>` and `</think>`. Structured-output constraints apply only after the end marker.
 */
export interface ReasoningMarkers {
  /** `<think>`'s id, when the vocabulary has one. */
  readonly startTokenId: number | undefined;
  /** `</think>`'s id (151668 in Qwen3's vocabulary). */
  readonly endTokenId: number;
}

/** The reasoning parsers the engine knows, with the text of their markers. */
export const reasoningParsers = {
  qwen3: { start: '<think>', end: '</think>' },
  deepseek_r1: { start: '<think>', end: '</think>' },
} as const;

export type ReasoningParserName = keyof typeof reasoningParsers;

/**
 * Whether reasoning has ended by the end of `tokenIds`: its last end marker comes after its last start marker.
 * A prompt that closes the thinking itself (Qwen3's template with `enable_thinking: false` writes `<think>\n\n</think>`)
 * has ended it; one whose last turn opens `<think>` (DeepSeek-R1's template) has not.
 */
export function reasoningEndedIn(tokenIds: ArrayLike<number>, markers: ReasoningMarkers): boolean {
  for (let index = tokenIds.length - 1; index >= 0; index -= 1) {
    const tokenId = tokenIds[index];
    if (tokenId === markers.endTokenId) return true;
    if (tokenId === markers.startTokenId) return false;
  }
  return false;
}

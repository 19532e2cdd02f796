/**
 * One step's contract between the engine core and a model runner (the CPU runner, the paged GPU runner and the
 * parallel executor all take these requests and return these outputs).
 */

/** Which of a request's new tokens get logits back: the last (to sample), all (prompt logprobs) or none. */
export type LogitsRows = 'last' | 'all' | 'none';

/** One request's share of a step. */
export interface ModelRunnerRequest {
  /** The tokens to run this step; they take positions `numComputedTokens`, `numComputedTokens + 1`, ... */
  readonly tokenIds: ArrayLike<number>;
  /** Tokens of this request already in the cache (their keys and values sit in the blocks of `blockTable`). */
  readonly numComputedTokens: number;
  /** The request's blocks in position order; it must cover `numComputedTokens + tokenIds.length` tokens. */
  readonly blockTable: ArrayLike<number>;
  /** Default `last`. A chunk of a prompt that is not its end passes `none`. */
  readonly logits?: LogitsRows;
}

/** What one step returns. */
export interface ModelRunnerOutput {
  /**
   * `[numRows, vocabSize]` row-major: the requested rows, request after request. A pooling model's runner returns
   * the final norm's hidden states in their place, `vocabSize` then being the hidden size.
   */
  readonly logits: Float32Array;
  readonly vocabSize: number;
  /** Request `i`'s rows are `logitsRowStart[i]` up to `logitsRowStart[i + 1]`. */
  readonly logitsRowStart: Int32Array;
  /** With tensor parallelism: the all-reduces of this step on the output rank, and the time spent in them. */
  readonly parallelStats?: { readonly allReduceCount: number; readonly allReduceMs: number };
}

import type { StructuredOutputsSpec } from '@pagoda/sampling';

/**
 * A grammar library behind the structured-output manager, after vLLM's `StructuredOutputBackend`: it compiles a
 * request's constraint into a {@link StructuredOutputGrammar}. Compiled forms are cached by the spec's key, so n
 * samples or many requests with one schema compile it once. One file per backend (`backend-xgrammar.ts`).
 */
export interface StructuredOutputBackend {
  /** Tokens in a bitmask row: the model's vocabulary size (its logits' width). */
  readonly vocabSize: number;
  /**
   * A fresh grammar (its own matcher state) for `spec`; compiles it unless `key` is cached. Rejects with a
   * `StructuredOutputError` for a spec the library refuses.
   */
  compile(key: string, spec: StructuredOutputsSpec): Promise<StructuredOutputGrammar>;
  /** Whether `key` is compiled and cached (a grammar for it is then made without compiling). */
  isCompiled(key: string): boolean;
  dispose(): void;
}

/**
 * One request's matcher, after vLLM's `StructuredOutputGrammar`: it follows every token the request generates and
 * says which tokens may come next.
 */
export interface StructuredOutputGrammar {
  /** Advances over `tokenIds`; false (and no further) at the first token the grammar does not allow. */
  acceptTokens(tokenIds: readonly number[]): boolean;
  /** Writes the allowed next tokens into `bitmask` at word `offset` (`ceil(vocabSize / 32)` words). */
  fillBitmask(bitmask: Int32Array, offset: number): Promise<void>;
  /** Undoes the last `numTokens` accepted tokens. */
  rollback(numTokens: number): void;
  /** Back to the start, as before any token. */
  reset(): void;
  /** The grammar accepted a stop token: nothing may follow. */
  isTerminated(): boolean;
  dispose(): void;
}

/** Words in one bitmask row. */
export function bitmaskWords(vocabSize: number): number {
  return Math.ceil(vocabSize / 32);
}

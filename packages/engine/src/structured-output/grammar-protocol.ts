import type { StructuredOutputsSpec } from '@pagoda/sampling';
import type { SerializedError } from '../core/worker-protocol';

/** What the grammar worker starts with. */
export interface GrammarWorkerData {
  /** The checkpoint's `tokenizer.json`: the worker builds XGrammar's tokenizer info from it. */
  readonly tokenizerPath: string;
  /** The model's vocabulary size (its logits' width): bitmask rows cover this many tokens. */
  readonly vocabSize: number;
  readonly stopTokenIds: readonly number[];
  readonly disableAnyWhitespace: boolean;
}

export type ToGrammarWorkerMessage =
  /** A matcher for the request, compiling `spec` unless `key` is cached. Answered by `compiled`. */
  | { readonly type: 'compile'; readonly requestId: string; readonly key: string; readonly spec: StructuredOutputsSpec }
  /** Tokens the requests generated (after their reasoning ended), in order. */
  | { readonly type: 'accept'; readonly tokens: ReadonlyArray<readonly [string, readonly number[]]> }
  /** The next-token bitmasks of these requests, one row each, in this order. Answered by `bitmasks`. */
  | { readonly type: 'fill'; readonly fillId: number; readonly requestIds: readonly string[] }
  | { readonly type: 'remove'; readonly requestIds: readonly string[] };

export type FromGrammarWorkerMessage =
  /** Tokenizer info and compiler built; `setupMs` includes reading tokenizer.json. */
  | { readonly type: 'ready'; readonly setupMs: number; readonly tokenizerInfoMs: number }
  | {
      readonly type: 'compiled';
      readonly requestId: string;
      readonly key: string;
      readonly error: SerializedError | undefined;
      /** Compilation time; 0 when the key was cached. */
      readonly compileMs: number;
    }
  | { readonly type: 'bitmasks'; readonly fillId: number; readonly bitmask: Int32Array; readonly fillMs: number }
  /** A token a matcher did not accept: the request's output left its grammar (it is then followed no further). */
  | { readonly type: 'rejected'; readonly requestId: string; readonly tokenId: number }
  /** The worker cannot serve (XGrammar failed to load, or the tokenizer could not be read). */
  | { readonly type: 'fatal'; readonly error: SerializedError };

import type { ChatMessage, ChatTemplateOptions } from './text-tokenizer';

/** The environment variable that tells a frontend worker process its tokenizer's folder. */
export const tokenizerDirVariable = 'PAGODA_FRONTEND_TOKENIZER_DIR';

/** One unit of frontend work, as it crosses to a pool worker (plain data, structured-cloned over IPC). */
export type FrontendTask =
  | { readonly type: 'ping' }
  /** Collects garbage (the workers run with `--expose-gc`), so a memory measurement sees what is really held. */
  | { readonly type: 'gc' }
  | { readonly type: 'encode'; readonly texts: readonly string[]; readonly addSpecialTokens: boolean }
  | { readonly type: 'decode'; readonly tokenIds: readonly number[]; readonly skipSpecialTokens: boolean }
  | {
      readonly type: 'render';
      readonly messages: readonly ChatMessage[];
      readonly options: ChatTemplateOptions;
      /** A rendering longer than this (UTF-8 bytes) is refused instead of returned or tokenized. */
      readonly maxOutputBytes: number;
      /** Tokenize the rendering in the same task. */
      readonly encodeWith?: { readonly addSpecialTokens: boolean };
    };

/**
 * A task's outcome. Errors come back as values: an `Error` thrown across the process boundary loses its class.
 */
export type FrontendTaskResult =
  | { readonly type: 'ok'; readonly text?: string; readonly tokenIds?: number[]; readonly tokenIdLists?: number[][] }
  | { readonly type: 'too-long'; readonly bytes: number }
  | { readonly type: 'error'; readonly code: string; readonly message: string };

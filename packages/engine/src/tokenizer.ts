import type { Tokenizer } from '@huggingface/tokenizers';
import { TextTokenizer } from './frontend/text-tokenizer';

/** Loads a checkpoint's `tokenizer.json` with its `tokenizer_config.json` (added tokens, BOS/EOS settings). */
export async function loadTokenizer(modelDir: string): Promise<Tokenizer> {
  return (await TextTokenizer.load(modelDir)).tokenizer;
}

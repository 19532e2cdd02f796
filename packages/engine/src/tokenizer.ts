import { Tokenizer } from '@huggingface/tokenizers';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PagodaEngineError } from './errors';

/** Loads a checkpoint's `tokenizer.json` with its `tokenizer_config.json` (added tokens, BOS/EOS settings). */
export async function loadTokenizer(modelDir: string): Promise<Tokenizer> {
  const [tokenizerJson, tokenizerConfig] = await Promise.all([
    readJson(join(modelDir, 'tokenizer.json'), true),
    readJson(join(modelDir, 'tokenizer_config.json'), false),
  ]);
  return new Tokenizer(tokenizerJson!, tokenizerConfig ?? {});
}

async function readJson(file: string, required: boolean): Promise<object | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PagodaEngineError('tokenizer_missing', `${file}: cannot read the tokenizer file`, { cause: error });
  }
  try {
    return JSON.parse(text) as object;
  } catch (error) {
    throw new PagodaEngineError('tokenizer_invalid', `${file}: is not valid JSON`, { cause: error });
  }
}

import { readFile } from 'node:fs/promises';
import { Random } from '../random';

/** One request of a benchmark: the prompt as text or token ids, its length in tokens, and how many tokens to ask for. */
export interface BenchmarkRequest {
  readonly prompt: string | readonly number[];
  /** Prompt tokens: exact for token-id prompts; for text, the tokenizer's count or, without one, an estimate. */
  readonly promptLength: number;
  readonly expectedOutputLength: number;
}

export interface RandomDatasetOptions {
  readonly numPrompts: number;
  readonly inputLength: number;
  readonly outputLength: number;
  /** Lengths are drawn uniformly from `[length·(1−r), length·(1+r)]`; 0 makes every request the same. */
  readonly rangeRatio: number;
  /** Tokens every prompt starts with, the same for all (a shared system prompt, for prefix caching). */
  readonly prefixLength: number;
  /** Token ids are drawn from `[0, vocabSize)` leaving out `excludedTokenIds` (special tokens). */
  readonly vocabSize: number;
  readonly excludedTokenIds?: readonly number[];
  readonly seed: number;
}

/**
 * vLLM's random dataset, as token ids: each prompt is the shared prefix, then a run of consecutive ids from a random
 * offset (`(offset + index + k) mod vocab`, so no two prompts share more than the prefix). vLLM decodes these ids to
 * text and sends the text; sending the ids themselves (allowed by the completions API) keeps the prompt length exact.
 */
export function randomDataset(options: RandomDatasetOptions): BenchmarkRequest[] {
  const { numPrompts, inputLength, outputLength, rangeRatio, prefixLength, vocabSize } = options;
  if (!(rangeRatio >= 0 && rangeRatio < 1)) throw new RangeError(`--random-range-ratio must be in [0, 1), got ${rangeRatio}`);
  for (const [name, value] of [
    ['--num-prompts', numPrompts],
    ['--random-input-len', inputLength],
    ['--random-prefix-len', prefixLength],
  ] as const) {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  }
  if (!Number.isInteger(outputLength) || outputLength < 1) throw new RangeError(`--random-output-len must be a positive integer, got ${outputLength}`);
  const excluded = new Set(options.excludedTokenIds ?? []);
  const allowed: number[] = [];
  for (let id = 0; id < vocabSize; id++) if (!excluded.has(id)) allowed.push(id);
  if (allowed.length === 0) throw new RangeError('no token ids left to draw prompts from');

  const random = new Random(options.seed);
  const lengths = (length: number, minimum: number) => {
    const low = Math.max(minimum, Math.floor(length * (1 - rangeRatio)));
    const high = Math.max(low, Math.ceil(length * (1 + rangeRatio)));
    return Array.from({ length: numPrompts }, () => random.integer(low, high + 1));
  };
  const inputLengths = lengths(inputLength, 0);
  const outputLengths = lengths(outputLength, 1);
  const offsets = Array.from({ length: numPrompts }, () => random.integer(0, allowed.length));
  const prefix = Array.from({ length: prefixLength }, () => allowed[random.integer(0, allowed.length)]!);
  return inputLengths.map((length, index) => {
    const prompt = [...prefix];
    for (let position = 0; position < length; position++) {
      prompt.push(allowed[(offsets[index]! + index + position) % allowed.length]!);
    }
    return { prompt, promptLength: prompt.length, expectedOutputLength: outputLengths[index]! };
  });
}

/**
 * A JSONL prompts file: one JSON object a line with `prompt` (text or an array of token ids) and optionally
 * `output_len` (else `defaultOutputLength`) and `prompt_len`. Blank lines are skipped. Without `prompt_len` a text
 * prompt's length comes from `countTokens`.
 */
export async function jsonlDataset(
  file: string,
  options: { numPrompts: number | undefined; defaultOutputLength: number; countTokens: (text: string) => number },
): Promise<BenchmarkRequest[]> {
  const text = await readFile(file, 'utf8');
  return parseJsonlDataset(text, file, options);
}

export function parseJsonlDataset(
  text: string,
  file: string,
  options: { numPrompts: number | undefined; defaultOutputLength: number; countTokens: (text: string) => number },
): BenchmarkRequest[] {
  const requests: BenchmarkRequest[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.trim();
    if (line === '') continue;
    if (options.numPrompts !== undefined && requests.length >= options.numPrompts) break;
    const where = `${file}:${index + 1}`;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (error) {
      throw new Error(`${where}: not JSON (${(error as Error).message})`);
    }
    if (typeof record !== 'object' || record === null) throw new Error(`${where}: expected an object with "prompt"`);
    const { prompt, output_len: outputLength, prompt_len: promptLength } = record as Record<string, unknown>;
    const isIds = Array.isArray(prompt) && prompt.length > 0 && prompt.every((id) => Number.isInteger(id) && (id as number) >= 0);
    if (typeof prompt !== 'string' && !isIds) throw new Error(`${where}: "prompt" must be a string or a non-empty array of token ids`);
    const expectedOutputLength = outputLength ?? options.defaultOutputLength;
    if (!Number.isInteger(expectedOutputLength) || (expectedOutputLength as number) < 1) {
      throw new Error(`${where}: "output_len" must be a positive integer, got ${JSON.stringify(outputLength)}`);
    }
    const ids = prompt as string | number[];
    requests.push({
      prompt: ids,
      promptLength:
        typeof promptLength === 'number' ? promptLength : typeof ids === 'string' ? options.countTokens(ids) : ids.length,
      expectedOutputLength: expectedOutputLength as number,
    });
  }
  if (requests.length === 0) throw new Error(`${file}: no prompts`);
  // Like vLLM's oversampling, a file shorter than --num-prompts is reused from the top.
  const wanted = options.numPrompts ?? requests.length;
  return Array.from({ length: wanted }, (_, index) => requests[index % requests.length]!);
}

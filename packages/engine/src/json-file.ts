import { readFile } from 'node:fs/promises';

/**
 * Reads and parses a checkpoint's JSON file. A missing optional file gives `undefined`; otherwise a file that cannot
 * be read or parsed throws the error `error` builds for the problem, so each caller keeps its own typed error.
 */
export async function readJsonFile(
  file: string,
  options: { optional: boolean; error: (problem: 'unreadable' | 'invalid', cause: unknown) => Error },
): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    if (options.optional && (cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw options.error('unreadable', cause);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw options.error('invalid', cause);
  }
}

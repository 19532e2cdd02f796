import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A command line that cannot run: the CLI prints the message and exits with status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;
type ParsedValues<T extends Options> = ReturnType<typeof parseArgs<{ options: T; strict: true; allowPositionals: false }>>['values'];

/**
 * Parses `--name value` options strictly. Options listed in `multiValued` also take every following word that is not
 * an option, as vLLM's `nargs='+'` does (`--goodput ttft:200 tpot:50`).
 */
export function parseOptions<T extends Options>(argv: readonly string[], options: T, multiValued: readonly string[] = []): ParsedValues<T> {
  const normalized: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const word = argv[index]!;
    normalized.push(word);
    if (!word.startsWith('--') || word.includes('=') || !multiValued.includes(word.slice(2))) continue;
    let first = true;
    while (index + 1 < argv.length && !argv[index + 1]!.startsWith('--')) {
      if (!first) normalized.push(word);
      normalized.push(argv[++index]!);
      first = false;
    }
  }
  try {
    return parseArgs({ args: normalized, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export function integerOption(name: string, value: string | undefined, minimum: number): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < minimum) throw new UsageError(`--${name} must be an integer >= ${minimum}, got ${JSON.stringify(value)}`);
  return parsed;
}

export function numberOption(name: string, value: string | undefined, check: (value: number) => boolean, expected: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = value === 'inf' ? Infinity : Number(value);
  if (value.trim() === '' || Number.isNaN(parsed) || !check(parsed)) throw new UsageError(`--${name} must be ${expected}, got ${JSON.stringify(value)}`);
  return parsed;
}

/** A comma-separated list: `1,2,4` or `a,b`. */
export function listOption(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

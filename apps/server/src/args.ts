import { fixturePath } from '@pagoda/fixtures';
import { parseArgs } from 'node:util';

export interface ServeOptions {
  model: string;
  host: string;
  port: number;
  servedModelName: string | undefined;
}

/** Thrown for a command line that cannot be run; the CLI prints the message and exits with status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The built-in default model: the tiny Qwen2 checkpoint that ships with the repository. */
export const defaultModelDir = fixturePath('tiny-qwen2');

export const usage = `Usage: pagoda serve [--model DIR] [--host HOST] [--port PORT] [--served-model-name NAME]

  --model DIR               Hugging Face checkpoint folder (default: the built-in tiny-qwen2)
  --host HOST               address to listen on (default 127.0.0.1)
  --port PORT               port to listen on (default 8000; 0 picks a free one)
  --served-model-name NAME  the model name clients use (default: the folder's name)`;

export function parseServeArgs(argv: readonly string[]): ServeOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        model: { type: 'string' },
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '8000' },
        'served-model-name': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--port must be an integer in [0, 65535], got ${JSON.stringify(values.port)}`);
  }
  return {
    model: values.model ?? defaultModelDir,
    host: values.host,
    port,
    servedModelName: values['served-model-name'],
  };
}

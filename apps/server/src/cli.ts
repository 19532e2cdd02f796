import { EngineOptionsError, KvCacheCapacityError } from '@pagoda/engine';
import packageJson from '../package.json' with { type: 'json' };
import { parseServeArgs, usage, UsageError } from './args';
import { serve } from './serve';

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || rest.includes('--help')) {
    console.log(usage);
    return;
  }
  if (command !== 'serve') throw new UsageError(`unknown command ${JSON.stringify(command)}\n\n${usage}`);
  const running = await serve(parseServeArgs(rest), packageJson.version, (line) => console.log(line));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: no longer accepting requests; draining those in flight`);
    running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`pagoda: while stopping: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError || error instanceof EngineOptionsError || KvCacheCapacityError.isInstance(error)) {
    console.error(`pagoda: ${error.message}`);
    process.exit(2);
  }
  console.error(`pagoda: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});

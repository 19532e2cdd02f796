import { EngineOptionsError, KvCacheCapacityError } from '@pagoda/engine';
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import packageJson from '../package.json' with { type: 'json' };
import { parseServeArgs, type ServeOptions, usage, UsageError } from './args';
import { serve } from './serve';

/** The exit status after a drain that had to cut requests at `--timeout-graceful-shutdown`. */
const exitRequestsCut = 3;

/** pino to stdout: JSON lines, or (on a terminal, or with --log-format text) readable text through pino-pretty. */
function createLogger(options: ServeOptions): Logger {
  const text = options.logFormat === 'text' || (options.logFormat === 'auto' && process.stdout.isTTY === true);
  const settings = { level: options.logLevel, base: null };
  return text ? pino(settings, pretty({ sync: true, colorize: process.stdout.isTTY === true, ignore: 'pid,hostname' })) : pino(settings);
}

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v' || rest.includes('--version')) {
    console.log(packageJson.version);
    return;
  }
  if (command === undefined || command === '--help' || command === '-h' || rest.includes('--help')) {
    console.log(usage);
    return;
  }
  if (command !== 'serve') throw new UsageError(`unknown command ${JSON.stringify(command)}\n\n${usage}`);
  const options = parseServeArgs(rest);
  const logger = createLogger(options);
  const requestLogger = options.disableLogRequests ? logger.child({}, { level: 'warn' }) : logger;
  const running = await serve(options, packageJson.version, (line) => logger.info(line), 5000, requestLogger);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: no longer accepting requests; draining those in flight (at most ${options.timeoutGracefulShutdown} s)`);
    running.stop().then(
      ({ cut }) => {
        if (cut > 0) logger.warn(`the drain deadline passed: ${cut} requests were cut`);
        process.exit(cut > 0 ? exitRequestsCut : 0);
      },
      (error: unknown) => {
        logger.error(`while stopping: ${String(error)}`);
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

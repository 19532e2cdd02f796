import { parseServeArgs, runServeCommand } from './serve-command';

export { serveUsage } from './serve-command';

export async function serveMain(argv: readonly string[]): Promise<void> {
  const result = await runServeCommand(parseServeArgs(argv), { log: (line) => console.log(line) });
  if (result.metrics.completed === 0) throw new Error('every request failed');
}

// Runs one micro-benchmark: `pnpm --filter @pagoda/bench-app micro <name> [args...]`, where <name> is a module in
// this folder whose default export is `(args: string[]) => Promise<object>`. Prints the result as JSON and saves
// it under `bench-results/` at the repository root (ignored by git), stamped with the machine and time.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

type MicroBenchmark = (args: string[]) => Promise<object>;

const [name, ...args] = process.argv.slice(2);
if (name === undefined || !/^[a-z0-9-]+$/.test(name)) {
  console.error('Usage: micro <name> [args...]   e.g. micro sampling');
  process.exit(2);
}
const module = (await import(`./${name}.ts`)) as { default: MicroBenchmark };
const result = await module.default(args);
const record = {
  benchmark: name,
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  result,
};
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
const directory = join(root, 'bench-results');
mkdirSync(directory, { recursive: true });
const file = join(directory, `micro-${name}-${record.date.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
console.log(JSON.stringify(record, null, 2));
console.log(`saved ${file}`);

// Vitest runs TypeScript from source, but worker threads and child processes load plain JavaScript. Rather than
// a second copy of the transports in JavaScript, this bundles the test entries from the same sources with tsup
// (esbuild) once per run, into node_modules/.cache where `zeromq` still resolves, and tells the tests where.
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'tsup';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The folder holding the bundled test entries (`test-worker-runner.mjs`, `test-zeromq-rank.mjs`). */
    testEntriesDirectory: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
  const cache = join(packageRoot, 'node_modules', '.cache', 'pagoda-parallel-tests');
  await mkdir(cache, { recursive: true });
  const outDir = await mkdtemp(join(cache, 'run-'));
  await build({
    config: false,
    entry: {
      'test-worker-runner': join(packageRoot, 'src', 'test-worker-runner.ts'),
      'test-zeromq-rank': join(packageRoot, 'src', 'test-zeromq-rank.ts'),
    },
    format: ['esm'],
    outDir,
    outExtension: () => ({ js: '.mjs' }),
    target: 'node20',
    platform: 'node',
    external: ['zeromq'],
    dts: false,
    sourcemap: true,
    silent: true,
  });
  project.provide('testEntriesDirectory', outDir);
  return async () => {
    await rm(outDir, { recursive: true, force: true });
  };
}

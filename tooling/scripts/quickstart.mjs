#!/usr/bin/env node
// The README's two quick-start commands, for a machine with only Node.js and npm (no global pnpm):
//   npm start  installs the workspace, builds what the server needs and starts `pagoda serve` (extra args pass on)
//   npm test   installs the workspace, builds every package, then runs every typecheck, lint and test (the tests
//              that assert timings or memory last, alone: vitest.alone.config.ts)
// pnpm is run through npx at the version `packageManager` pins. onnxruntime-node's CUDA download is skipped
// (its script is also not allowed to run; see pnpm-workspace.yaml), since these machines cannot reach its feed.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [mode, ...extraArgs] = process.argv.slice(2);

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  console.error(`Pagoda needs Node.js 20.19 or newer; this is ${process.version}.`);
  process.exit(1);
}

const { packageManager } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const env = {
  ...process.env,
  ONNXRUNTIME_NODE_INSTALL: process.env.ONNXRUNTIME_NODE_INSTALL ?? 'skip',
  TURBO_TELEMETRY_DISABLED: '1',
  DO_NOT_TRACK: '1',
  npm_config_update_notifier: 'false',
};
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';

function step(title, args) {
  console.log(`\n> ${title}: pnpm ${args.join(' ')}`);
  const result = spawnSync(npx, ['-y', packageManager, ...args], { cwd: root, env, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`\n${title} failed (exit ${result.status ?? result.signal}).`);
    process.exit(result.status ?? 1);
  }
}

function install() {
  step('install', ['install', ...(process.env.CI ? ['--frozen-lockfile'] : [])]);
}

if (mode === 'start') {
  install();
  step('build the server', ['exec', 'turbo', 'run', 'build', '--filter=@pagoda/server-app...', '--output-logs=errors-only']);
  console.log(`\n> pagoda serve ${extraArgs.join(' ')}`);
  // npm runs scripts from the package root; INIT_CWD is where the user typed `npm start`, so relative paths
  // (`--model ./my-model`, `--chat-template t.jinja`) mean what they would in their shell.
  const server = spawn(process.execPath, [join(root, 'apps', 'server', 'dist', 'cli.js'), 'serve', ...extraArgs], {
    cwd: process.env.INIT_CWD ?? root,
    env,
    stdio: 'inherit',
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.kill(signal));
  server.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else if (mode === 'test') {
  install();
  step('build, typecheck and lint', [
    'exec', 'turbo', 'run', 'build', 'typecheck', 'lint', '--output-logs=errors-only', ...(process.env.CI ? ['--concurrency=2'] : []),
  ]);
  step('lint the top level', ['exec', 'eslint', '.']);
  step('test', ['exec', 'vitest', 'run', ...extraArgs]);
  // Tests that assert timings or memory run after the others, one file at a time, with the machine to themselves.
  step('tests that run alone', ['exec', 'vitest', 'run', '--config', 'vitest.alone.config.ts', '--passWithNoTests', ...extraArgs]);
} else {
  console.error('Usage: node tooling/scripts/quickstart.mjs start [pagoda serve args] | test [vitest args]');
  process.exit(2);
}

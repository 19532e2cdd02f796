import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/cli.ts'],
  format: ['esm'],
  sourcemap: true,
  clean: true,
  target: 'node20',
  banner: { js: '#!/usr/bin/env node' },
  // A devDependency, so tsup would bundle it: it loads native binaries by package name and must stay a real import.
  external: ['node-llama-cpp'],
});

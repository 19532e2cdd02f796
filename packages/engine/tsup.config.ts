import { defineConfig } from 'tsup';

export default defineConfig({
  // The engine core's worker thread is a second entry: AsyncLLM starts dist/engine-core-worker.js beside dist/index.js.
  entry: { index: 'src/index.ts', 'engine-core-worker': 'src/core/engine-core-worker.ts' },
  format: ['esm'],
  dts: { entry: 'src/index.ts' },
  sourcemap: true,
  clean: true,
  target: 'node20',
});

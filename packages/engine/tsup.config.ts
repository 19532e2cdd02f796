import { defineConfig } from 'tsup';

export default defineConfig({
  // Worker threads load their own entries beside dist/index.js: AsyncLLM's engine core (engine-core-worker.js) and
  // each tensor- or pipeline-parallel rank (rank-worker.js), and the structured-output grammar worker
  // (grammar-worker.js). @mlc-ai/web-xgrammar stays a dependency, loaded by the grammar worker only.
  entry: {
    index: 'src/index.ts',
    'engine-core-worker': 'src/core/engine-core-worker.ts',
    'rank-worker': 'src/parallel/rank-worker.ts',
    'grammar-worker': 'src/structured-output/grammar-worker.ts',
  },
  format: ['esm'],
  dts: { entry: 'src/index.ts' },
  sourcemap: true,
  clean: true,
  target: 'node20',
});

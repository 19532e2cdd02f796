import { defineConfig } from 'tsup';

export default defineConfig({
  // Workers load their own entries beside dist/index.js: AsyncLLM's engine core (engine-core-worker.js), each
  // tensor- or pipeline-parallel rank (rank-worker.js) and the tokenizer pool's processes (frontend-worker.js).
  entry: {
    index: 'src/index.ts',
    'engine-core-worker': 'src/core/engine-core-worker.ts',
    'rank-worker': 'src/parallel/rank-worker.ts',
    'frontend-worker': 'src/frontend/frontend-worker.ts',
  },
  format: ['esm'],
  dts: { entry: 'src/index.ts' },
  sourcemap: true,
  clean: true,
  target: 'node20',
});

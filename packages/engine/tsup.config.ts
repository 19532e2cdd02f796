import { defineConfig } from 'tsup';

export default defineConfig({
  // Worker threads load their own entries beside dist/index.js: AsyncLLM's engine core (engine-core-worker.js) and
  // each tensor- or pipeline-parallel rank (rank-worker.js).
  entry: {
    index: 'src/index.ts',
    // @pagoda/engine/test: GGUF writers for other packages' tests and benchmarks.
    'test/index': 'src/test/index.ts',
    'engine-core-worker': 'src/core/engine-core-worker.ts',
    'rank-worker': 'src/parallel/rank-worker.ts',
  },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts', 'test/index': 'src/test/index.ts' } },
  sourcemap: true,
  clean: true,
  target: 'node20',
});

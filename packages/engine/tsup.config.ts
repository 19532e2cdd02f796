import { defineConfig } from 'tsup';

export default defineConfig({
  // Workers load their own entries beside dist/index.js: AsyncLLM's engine core (engine-core-worker.js), each
  // tensor- or pipeline-parallel rank (rank-worker.js), the tokenizer pool's processes (frontend-worker.js) and the
  // structured-output grammar worker (grammar-worker.js). @mlc-ai/web-xgrammar stays a dependency, loaded by the
  // grammar worker only.
  entry: {
    index: 'src/index.ts',
    // @pagoda/engine/test: GGUF writers and JSON oracles for other packages' tests and benchmarks.
    'test/index': 'src/test/index.ts',
    'engine-core-worker': 'src/core/engine-core-worker.ts',
    'rank-worker': 'src/parallel/rank-worker.ts',
    'frontend-worker': 'src/frontend/frontend-worker.ts',
    'grammar-worker': 'src/structured-output/grammar-worker.ts',
  },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts', 'test/index': 'src/test/index.ts' } },
  sourcemap: true,
  clean: true,
  target: 'node20',
});

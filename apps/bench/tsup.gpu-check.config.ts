import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { defineConfig } from 'tsup';

// tinypool is the engine's dependency: found from there, its process entry beside its main module.
const fromEngine = createRequire(createRequire(import.meta.url).resolve('@pagoda/engine/package.json'));
const tinypoolProcessEntry = join(dirname(fromEngine.resolve('tinypool')), 'entry', 'process.js');

// One self-contained folder for a lent GPU machine, which has no node_modules: pagoda-bench (its gpu-check command
// included), the engine core's worker thread, the tokenizer pool's worker process (with tinypool's process entry,
// which tinypool forks from `entry/process.js` beside its own code) and the structured-output grammar worker
// (XGrammar's WASM inlined), with every dependency inlined except the native ones. ONNX Runtime comes from the
// machine's NODE_PATH (tooling/gpu/prepare-check.sh carries it).
export default defineConfig({
  entry: {
    'gpu-check': 'src/gpu/main.ts',
    'engine-core-worker': '../../packages/engine/src/core/engine-core-worker.ts',
    'frontend-worker': '../../packages/engine/src/frontend/frontend-worker.ts',
    'entry/process': tinypoolProcessEntry,
    'grammar-worker': '../../packages/engine/src/structured-output/grammar-worker.ts',
  },
  outDir: '../../.gpu-check/bundle',
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  clean: true,
  sourcemap: false,
  splitting: true,
  noExternal: [/^(?!onnxruntime-node$|onnxruntime-common$|zeromq$)/],
  external: ['onnxruntime-node', 'zeromq'],
  // Bundled CommonJS dependencies (protobufjs) call require: give the ESM bundle one.
  banner: { js: "import { createRequire as __pagodaCreateRequire } from 'node:module'; const require = __pagodaCreateRequire(import.meta.url);" },
  esbuildOptions(options) {
    options.conditions = ['@pagoda/source'];
  },
});

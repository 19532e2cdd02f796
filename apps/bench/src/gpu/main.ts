// The GPU check's own entry, bundled for a GPU machine without node_modules (tsup.gpu-check.config.ts): only what the
// check runs, not pagoda-bench's llama.cpp comparison and its native packages.
import { gpuCheckMain, gpuCheckUsage } from './gpu-check';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(gpuCheckUsage);
} else {
  gpuCheckMain(argv).then(
    // ONNX Runtime's thread pool must not keep a finished check alive.
    () => process.exit(process.exitCode ?? 0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}

import { UsageError } from './cli-args';

const usage = `Usage: pagoda-bench <command> [options]     (pagoda-bench <command> --help for its options)

Commands:
  serve              load-test an OpenAI-compatible server (like vllm bench serve)
  throughput         offline throughput through the LLM class (like vllm bench throughput)
  latency            one batch, repeated: end-to-end latency (like vllm bench latency)
  sweep              serve over a list of request rates or concurrencies, with an SVG chart
  export-gguf        write a checkpoint folder (or dummy weights) as an F32 GGUF for llama.cpp
  compare-llama-cpp  decode tokens/s of Pagoda and llama.cpp (node-llama-cpp) on the same weights, at F32, Q8_0 or Q4_0
  memory             peak RSS of serving a dummy model (loading included) against what its weights and cache need
  gpu-check          the GPU runner's correctness and throughput on this machine's GPU, into a notes file`;

/** Each command's module, loaded only when run: \`serve\` must not pay for ONNX Runtime or llama.cpp. */
const commands: Record<string, () => Promise<{ usage: string; main: (argv: readonly string[]) => Promise<void> }>> = {
  serve: async () => {
    const module = await import('./serve/main');
    return { usage: module.serveUsage, main: module.serveMain };
  },
  throughput: async () => {
    const module = await import('./offline/throughput');
    return { usage: module.throughputUsage, main: module.throughputMain };
  },
  latency: async () => {
    const module = await import('./offline/latency');
    return { usage: module.latencyUsage, main: module.latencyMain };
  },
  sweep: async () => {
    const module = await import('./sweep/sweep');
    return { usage: module.sweepUsage, main: module.sweepMain };
  },
  'export-gguf': async () => {
    const module = await import('./gguf/export-command');
    return { usage: module.exportGgufUsage, main: module.exportGgufMain };
  },
  'gpu-check': async () => {
    const module = await import('./gpu/gpu-check');
    return { usage: module.gpuCheckUsage, main: module.gpuCheckMain };
  },
  memory: async () => {
    const module = await import('./memory/memory-command');
    return { usage: module.memoryUsage, main: module.memoryMain };
  },
  'compare-llama-cpp': async () => {
    const module = await import('./llama-cpp/compare');
    return { usage: module.compareUsage, main: module.compareMain };
  },
};

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    console.log(usage);
    return;
  }
  const load = commands[command];
  if (load === undefined) throw new UsageError(`unknown command ${JSON.stringify(command)}\n\n${usage}`);
  const { usage: commandUsage, main: commandMain } = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(commandUsage);
    return;
  }
  await commandMain(rest);
}

main(process.argv.slice(2)).then(
  // Open handles (ONNX Runtime's thread pool, llama.cpp's) must not keep a finished benchmark alive.
  () => process.exit(0),
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`pagoda-bench: ${error.message}`);
      process.exit(2);
    }
    // The stack only on request: a failed benchmark's message says what went wrong.
    const detail = error instanceof Error ? (process.env.PAGODA_BENCH_DEBUG ? (error.stack ?? error.message) : error.message) : String(error);
    console.error(`pagoda-bench: ${detail}`);
    process.exit(1);
  },
);

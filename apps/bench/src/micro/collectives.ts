// All-reduce latency and bandwidth between 2 ranks (worker threads) on both transports of @pagoda/parallel, at the
// sizes a tensor-parallel step moves: one hidden row of SmolLM2-135M (576 floats), a batch of 64 rows, and one
// vocabulary row. This module is also the workers' entry: in a worker thread it serves the executor instead.
// Usage: micro collectives [ranks=2] [iterations=300]
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { createWorkerExecutor, createZeroMqCommunicator, serveExecutorWorker } from '@pagoda/parallel';
import type { Communicator } from '@pagoda/parallel';

interface BenchInput {
  transport: 'shared-memory' | 'zeromq';
  sizes: number[];
  iterations: number;
  warmup: number;
}

interface SizeResult {
  floats: number;
  bytes: number;
  medianUs: number;
  meanUs: number;
  minUs: number;
  /** Payload bytes per second of one rank at the median time, in GB/s. */
  bandwidthGBps: number;
}

const sizes = [576, 576 * 64, 49_152];
const maxBytes = Math.max(...sizes) * 4;

if (!isMainThread) {
  serveExecutorWorker<BenchInput, SizeResult[]>(({ communicator }) => {
    let zeromq: Communicator | undefined;
    return {
      async execute(input) {
        if (input.transport === 'zeromq') zeromq ??= await zeroMqOverSharedMemory(communicator);
        return timeAllReduce(input.transport === 'zeromq' ? zeromq! : communicator, input);
      },
      async close() {
        await zeromq?.close();
      },
    };
  });
}

/** Each rank binds a loopback port ZeroMQ picks; the ports are exchanged with an all-gather over shared memory. */
async function zeroMqOverSharedMemory(communicator: Communicator): Promise<Communicator> {
  return createZeroMqCommunicator({
    rank: communicator.rank,
    bindAddress: 'tcp://127.0.0.1:*',
    exchangeEndpoints: async (endpoint) => {
      const ports = new Int32Array(communicator.size);
      await communicator.allGather(Int32Array.of(Number(endpoint.split(':').at(-1))), ports);
      return Array.from(ports, (port) => `tcp://127.0.0.1:${port}`);
    },
    timeoutMs: 30_000,
  });
}

async function timeAllReduce(communicator: Communicator, input: BenchInput): Promise<SizeResult[]> {
  const results: SizeResult[] = [];
  for (const floats of input.sizes) {
    const data = new Float32Array(floats).fill(1 / communicator.size);
    for (let index = 0; index < input.warmup; index += 1) await communicator.allReduce(data);
    const samples = new Float64Array(input.iterations);
    for (let index = 0; index < input.iterations; index += 1) {
      data.fill(1 / communicator.size);
      const start = process.hrtime.bigint();
      await communicator.allReduce(data);
      samples[index] = Number(process.hrtime.bigint() - start) / 1000;
    }
    if (Math.abs(data[0]! - 1) > 1e-5) throw new Error(`all-reduce gave ${data[0]}, expected 1`);
    const sorted = Array.from(samples).sort((left, right) => left - right);
    const medianUs = sorted[Math.floor(sorted.length / 2)]!;
    results.push({
      floats,
      bytes: floats * 4,
      medianUs,
      meanUs: sorted.reduce((sum, value) => sum + value, 0) / sorted.length,
      minUs: sorted[0]!,
      bandwidthGBps: (floats * 4) / (medianUs * 1000),
    });
  }
  return results;
}

/**
 * The workers run this very module. Run from source it is TypeScript, and on Node 20 tsx's hooks do not reach
 * worker threads, so it is bundled to JavaScript first (workspace packages from their sources, as in this process);
 * `zeromq`, a native addon, stays external and is imported from where @pagoda/parallel resolves it.
 */
async function workerEntry(): Promise<URL> {
  if (!import.meta.url.endsWith('.ts')) return new URL(import.meta.url);
  const { build } = await import('tsup');
  const here = fileURLToPath(import.meta.url);
  const zeromqPath = createRequire(fileURLToPath(import.meta.resolve('@pagoda/parallel'))).resolve('zeromq');
  const outDir = join(dirname(here), '..', '..', 'node_modules', '.cache', 'pagoda-bench');
  await build({
    config: false,
    entry: { 'collectives-worker': here },
    format: ['esm'],
    outDir,
    outExtension: () => ({ js: '.mjs' }),
    platform: 'node',
    target: 'node20',
    external: ['tsup'],
    noExternal: ['@pagoda/parallel'],
    dts: false,
    silent: true,
    esbuildOptions(options) {
      options.conditions = ['@pagoda/source'];
    },
    esbuildPlugins: [
      {
        name: 'zeromq-from-parallel',
        setup(builder) {
          builder.onResolve({ filter: /^zeromq$/ }, () => ({ path: pathToFileURL(zeromqPath).href, external: true }));
        },
      },
    ],
  });
  return pathToFileURL(join(outDir, 'collectives-worker.mjs'));
}

export default async function collectivesBenchmark(args: string[]): Promise<object> {
  const ranks = Number(args[0] ?? 2);
  const iterations = Number(args[1] ?? 300);
  const executor = await createWorkerExecutor<BenchInput, SizeResult[]>({
    workerUrl: await workerEntry(),
    worldSize: ranks,
    maxMessageBytes: maxBytes,
  });
  try {
    const result: Record<string, SizeResult[]> = {};
    for (const transport of ['shared-memory', 'zeromq'] as const) {
      result[transport] = await executor.execute({ transport, sizes, iterations, warmup: 30 });
    }
    return { ranks, iterations, timedOn: 'rank 0', allReduce: result };
  } finally {
    await executor.close();
  }
}

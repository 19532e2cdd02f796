// `pagoda-bench memory`: the resident memory of serving a model, loading included, measured from outside the process.
import { AsyncLLM, formatBytes, type StartupMemory } from '@pagoda/engine';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { integerOption, parseOptions, UsageError } from '../cli-args';
import { qwen3Shape, smolLm2Shape, writeDummyModelDir } from '../dummy-model';
import { machineInfo, saveJson } from '../results';

export const memoryUsage = `Usage: pagoda-bench memory [options]

Starts a child process that serves a dummy model (seeded random weights, the tiny-llama tokenizer) through
AsyncLLM, the engine the server runs, and runs one batch of requests; samples the child's RSS every 10 ms from /proc (Linux) and takes its own peak
(getrusage's maxrss); prints and saves the peak beside what the model needs. The bound checked is the issue's:
peak − RSS before loading <= 1.15 × (weights as held + KV cache + activation peak), where the activation peak is
how far RSS rose while serving above RSS at the end of start-up.

  --shape NAME              qwen3-0.6b (default) or smollm2-135m
  --quantization Q          int8 or int4 (default: float32 weights)
  --kv-cache-memory SIZE    the KV cache (default 256MiB)
  --requests N              requests in the batch (default 8)
  --input-len N             prompt tokens each (default 128)
  --output-len N            tokens generated each (default 32)
  --token-range N           prompt token ids spread over ids 1000 .. 1000 + N - 1 (default 20000); a wide range
                            touches more embedding rows, as a server meeting real text does
  --max-num-batched-tokens N  the step's token budget (default the engine's, 2048): activations grow with it
  --threads N               ONNX Runtime intra-op threads (default: one per core)
  --output-json FILE        write the result as JSON`;

/** The dummy shapes, with the tiny-llama tokenizer as every dummy model has (its 32,000 ids fit both vocabularies). */
const shapes = { 'qwen3-0.6b': qwen3Shape, 'smollm2-135m': smolLm2Shape };

/** What the child reports on its last line of stdout. */
interface ChildReport {
  readonly startupMemory: StartupMemory;
  readonly startupLog: readonly string[];
  readonly rssAfterServingBytes: number;
  /** getrusage's maxrss at the end: the kernel's high-water mark over the process's life. */
  readonly peakRssBytes: number;
  readonly outputTokens: number;
  readonly servingSeconds: number;
}

export async function memoryMain(argv: readonly string[]): Promise<void> {
  if (argv[0] === '--child') return memoryChild(JSON.parse(argv[1]!) as ChildArgs);
  const values = parseOptions(argv, {
    shape: { type: 'string', default: 'qwen3-0.6b' },
    quantization: { type: 'string' },
    'kv-cache-memory': { type: 'string', default: '256MiB' },
    requests: { type: 'string', default: '8' },
    'input-len': { type: 'string', default: '128' },
    'output-len': { type: 'string', default: '32' },
    'token-range': { type: 'string', default: '20000' },
    'max-num-batched-tokens': { type: 'string' },
    threads: { type: 'string' },
    'output-json': { type: 'string' },
  });
  const shape = shapes[values.shape as keyof typeof shapes];
  if (shape === undefined) throw new UsageError(`--shape must be one of ${Object.keys(shapes).join(', ')}, got ${JSON.stringify(values.shape)}`);
  const quantization = values.quantization;
  if (quantization !== undefined && quantization !== 'int8' && quantization !== 'int4') throw new UsageError(`--quantization must be int8 or int4, got ${JSON.stringify(quantization)}`);
  const tokenRange = integerOption('token-range', values['token-range'], 1)!;
  if (1000 + tokenRange > shape.vocab_size) throw new UsageError(`--token-range must leave ids 1000 .. 1000 + N - 1 inside the ${shape.vocab_size}-token vocabulary, got ${tokenRange}`);
  const directory = await writeDummyModelDir(shape);
  try {
    const args: ChildArgs = {
      modelDir: directory,
      quantization,
      kvCacheMemory: values['kv-cache-memory'],
      requests: integerOption('requests', values.requests, 1)!,
      inputLength: integerOption('input-len', values['input-len'], 1)!,
      outputLength: integerOption('output-len', values['output-len'], 1)!,
      tokenRange,
      threads: integerOption('threads', values.threads, 1),
      maxNumBatchedTokens: integerOption('max-num-batched-tokens', values['max-num-batched-tokens'], 1),
    };
    console.log(`serving the dummy ${values.shape} (${quantization ?? 'float32'}, KV cache ${args.kvCacheMemory}) in a child process...`);
    const { report, sampledPeakRssBytes, samples } = await runChild(args);
    const { startupMemory: startup } = report;
    const peakRssBytes = Math.max(report.peakRssBytes, sampledPeakRssBytes);
    const activationBytes = Math.max(0, peakRssBytes - startup.rssAfterStartupBytes);
    const neededBytes = startup.weightBytes + startup.kvCacheBytes + activationBytes;
    const ratio = (peakRssBytes - startup.rssBeforeLoadingBytes) / neededBytes;
    const result = {
      benchmark: 'memory',
      shape: values.shape,
      quantization: quantization ?? 'float32',
      kv_cache_memory: args.kvCacheMemory,
      requests: args.requests,
      input_len: args.inputLength,
      output_len: args.outputLength,
      token_range: args.tokenRange,
      max_num_batched_tokens: args.maxNumBatchedTokens ?? 2048,
      rss_before_loading_bytes: startup.rssBeforeLoadingBytes,
      rss_after_startup_bytes: startup.rssAfterStartupBytes,
      peak_rss_at_startup_bytes: startup.peakRssBytes,
      rss_after_serving_bytes: report.rssAfterServingBytes,
      peak_rss_bytes: peakRssBytes,
      peak_rss_sampled_bytes: sampledPeakRssBytes,
      rss_samples: samples,
      weights_as_held_bytes: startup.weightBytes,
      kv_cache_bytes: startup.kvCacheBytes,
      activation_peak_bytes: activationBytes,
      bound_ratio: ratio,
      bound_holds: ratio <= 1.15,
      output_tokens_per_s: report.outputTokens / report.servingSeconds,
      startup_log: report.startupLog,
      machine: machineInfo(),
      note: 'bound_ratio = (peak RSS - RSS before loading) / (weights as held + KV cache + activation peak); activation peak = peak RSS - RSS after start-up',
    };
    console.log(report.startupLog.join('\n'));
    console.log(
      `peak RSS ${formatBytes(peakRssBytes)} (before loading ${formatBytes(startup.rssBeforeLoadingBytes)}, after start-up ` +
        `${formatBytes(startup.rssAfterStartupBytes)}); weights as held ${formatBytes(startup.weightBytes)} + KV cache ` +
        `${formatBytes(startup.kvCacheBytes)} + activation peak ${formatBytes(activationBytes)} = ${formatBytes(neededBytes)}; ` +
        `(peak − before loading) / that = ${ratio.toFixed(3)} (bound 1.15: ${ratio <= 1.15 ? 'holds' : 'exceeded'})`,
    );
    if (values['output-json'] !== undefined) {
      await saveJson(values['output-json'], result);
      console.log(`saved ${values['output-json']}`);
    }
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

interface ChildArgs {
  readonly modelDir: string;
  readonly quantization: 'int8' | 'int4' | undefined;
  readonly kvCacheMemory: string;
  readonly requests: number;
  readonly inputLength: number;
  readonly outputLength: number;
  readonly tokenRange: number;
  readonly threads: number | undefined;
  readonly maxNumBatchedTokens: number | undefined;
}

/** Runs the child (this CLI again, with the same Node flags), sampling its RSS until it exits. */
async function runChild(args: ChildArgs): Promise<{ report: ChildReport; sampledPeakRssBytes: number; samples: Array<[number, number]> }> {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'memory', '--child', JSON.stringify(args)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const started = performance.now();
  let sampledPeakRssBytes = 0;
  // Every 100th sample is kept for the JSON: [seconds since spawn, RSS bytes].
  const samples: Array<[number, number]> = [];
  let count = 0;
  const sample = (): void => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
      sampledPeakRssBytes = Math.max(sampledPeakRssBytes, rss);
      if (count++ % 100 === 0) samples.push([(performance.now() - started) / 1000, rss]);
    } catch {
      // Not Linux, or the child has exited: its own maxrss still reports the peak.
    }
  };
  const timer = setInterval(sample, 10);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearInterval(timer);
  if (code !== 0) throw new Error(`the child process exited with code ${code}`);
  const last = output.trim().split('\n').at(-1)!;
  return { report: JSON.parse(last) as ChildReport, sampledPeakRssBytes, samples };
}

/** The child: AsyncLLM on the dummy model, one batch of requests, then its numbers as one JSON line. */
async function memoryChild(args: ChildArgs): Promise<void> {
  const engine = await AsyncLLM.create(args.modelDir, {
    loadFormat: 'dummy',
    kvCacheMemory: args.kvCacheMemory,
    maxModelLen: args.inputLength + args.outputLength + 16,
    ...(args.quantization === undefined ? {} : { quantization: args.quantization }),
    ...(args.threads === undefined ? {} : { intraOpNumThreads: args.threads }),
    ...(args.maxNumBatchedTokens === undefined ? {} : { maxNumBatchedTokens: args.maxNumBatchedTokens }),
  });
  try {
    const started = performance.now();
    let outputTokens = 0;
    await Promise.all(
      Array.from({ length: args.requests }, async (_, index) => {
        const prompt = Array.from({ length: args.inputLength }, (_, position) => 1000 + ((index * 7919 + position * 31) % args.tokenRange));
        // Deltas: each carries the tokens made since the last one.
        for await (const delta of engine.generate({ prompt: prompt, samplingParams: { temperature: 0, maxTokens: args.outputLength, ignoreEos: true } })) {
          outputTokens += delta.outputs[0]?.tokenIds.length ?? 0;
        }
      }),
    );
    const report: ChildReport = {
      startupMemory: engine.startupMemory!,
      startupLog: engine.startupLog,
      rssAfterServingBytes: process.memoryUsage.rss(),
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      outputTokens,
      servingSeconds: (performance.now() - started) / 1000,
    };
    console.log(JSON.stringify(report));
  } finally {
    await engine.close();
  }
}

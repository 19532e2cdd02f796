// The GPU check: what a lent GPU machine must show about the GPU runner, in one run that writes its numbers to a
// JSON file and a notes file. It is not a test CI runs (CI has no GPU); on the CPU (`--device cpu`) it runs the same
// steps on the paged reference runner, which is how its own test keeps it working.
import {
  AsyncLLM,
  LLM,
  loadModelConfig,
  nvidiaSmiProbe,
  onnxRuntimeVersion,
  selectDevice,
  availableExecutionProviders,
  defaultGpuBlockSize,
  metadataEntriesFor,
  PagedModelRunner,
  type EngineOptions,
  type GpuDeviceInfo,
  type ModelRunnerRequest,
} from '@pagoda/engine';
import { satisfiesSchema } from '@pagoda/engine/test';
import { checkpointNames, decodeFloat32Base64, fixturePath, readReference, type CheckpointName } from '@pagoda/fixtures';
import { argmax } from '@pagoda/sampling';
import { kvCacheBytesPerToken } from '@pagoda/kv-cache';
import { createPagodaServer } from '@pagoda/server';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseOptions, UsageError } from '../cli-args';
import { smolLm2Shape, writeDummyModelDir } from '../dummy-model';
import { machineInfo, saveJson, timestamp } from '../results';
import { parseServeArgs, runServeCommand } from '../serve/serve-command';

export const gpuCheckUsage = `Usage: pagoda-bench gpu-check [options]

Checks the GPU runner on this machine and writes gpu-check.json and gpu-notes.md:
  1. every fixture model's prefill logits against transformers (float16: within 5e-2) and its greedy tokens (equal
     up to the first step whose top-2 margin is under 0.05), at block size 16 and at the device's default;
  2. a busy continuous-batching run with preemption: every request gets its solo output; and structured outputs
     (XGrammar's bitmasks on this device's logits): three JSON-schema requests give JSON that validates;
  3. decode tokens/s of the SmolLM2-135M-shaped dummy model through the server and pagoda-bench serve, at each
     stream count, next to Hugging Face transformers on an H100 and the memory roofline.
On CUDA it also runs part 1 in bfloat16 (reported, not judged: the 5e-2 bound is float16's).

Options:
  --device cuda|webgpu|cpu     cpu runs the paged reference runner (a smoke run of this script; default cuda)
  --dtype float16|bfloat16     default float16 (cpu: float32)
  --out DIR                    where to write the results (default .)
  --streams LIST               concurrent streams for the performance part (default 1,8,32,64,128)
  --input-len N                prompt tokens per request (default 128)
  --output-len N               generated tokens per request (default 128)
  --prompts-per-stream N       requests per stream at each point (default 2)
  --gpu-memory-utilization F   for the performance part's server (default 0.3: enough, and quicker to fill)
  --memory-bandwidth-gbs N     the device's memory bandwidth for the roofline (default: 3019 on an H100, as measured)
  --skip-perf                  only the correctness parts`;

/** Hugging Face transformers 5.17 generate on an H100 (bf16, eager, SmolLM2-135M's shape, 128 in / 128 out). */
export const transformersH100 = { 1: 11.7, 8: 98.7, 32: 406, 64: 972 } as const;

export interface GpuCheckOptions {
  readonly device: 'cuda' | 'webgpu' | 'cpu';
  readonly dtype: 'float16' | 'bfloat16' | undefined;
  readonly outDir: string;
  readonly streams: readonly number[];
  readonly inputLength: number;
  readonly outputLength: number;
  readonly promptsPerStream: number;
  readonly gpuMemoryUtilization: number;
  readonly memoryBandwidthGbs: number | undefined;
  readonly skipPerf: boolean;
  /** Fixture models to check (default all). */
  readonly models?: readonly CheckpointName[];
}

export function parseGpuCheckArgs(argv: readonly string[]): GpuCheckOptions {
  const values = parseOptions(argv, {
    device: { type: 'string', default: 'cuda' },
    dtype: { type: 'string' },
    out: { type: 'string', default: '.' },
    streams: { type: 'string', default: '1,8,32,64,128' },
    'input-len': { type: 'string', default: '128' },
    'output-len': { type: 'string', default: '128' },
    'prompts-per-stream': { type: 'string', default: '2' },
    'gpu-memory-utilization': { type: 'string', default: '0.3' },
    'memory-bandwidth-gbs': { type: 'string' },
    'skip-perf': { type: 'boolean', default: false },
  });
  const device = values.device;
  if (device !== 'cuda' && device !== 'webgpu' && device !== 'cpu') throw new UsageError(`--device must be cuda, webgpu or cpu, got ${JSON.stringify(device)}`);
  const dtype = values.dtype;
  if (dtype !== undefined && dtype !== 'float16' && dtype !== 'bfloat16') throw new UsageError(`--dtype must be float16 or bfloat16, got ${JSON.stringify(dtype)}`);
  const positive = (flag: string, text: string): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1) throw new UsageError(`--${flag} must be a positive integer, got ${JSON.stringify(text)}`);
    return value;
  };
  const utilization = Number(values['gpu-memory-utilization']);
  if (!(utilization > 0 && utilization <= 1)) throw new UsageError(`--gpu-memory-utilization must be in (0, 1], got ${values['gpu-memory-utilization']}`);
  return {
    device,
    dtype,
    outDir: values.out,
    streams: values.streams.split(',').map((item) => positive('streams', item.trim())),
    inputLength: positive('input-len', values['input-len']),
    outputLength: positive('output-len', values['output-len']),
    promptsPerStream: positive('prompts-per-stream', values['prompts-per-stream']),
    gpuMemoryUtilization: utilization,
    memoryBandwidthGbs: values['memory-bandwidth-gbs'] === undefined ? undefined : Number(values['memory-bandwidth-gbs']),
    skipPerf: values['skip-perf'],
  };
}

interface ModelCheck {
  model: CheckpointName;
  dtype: string;
  blockSize: number;
  /** Whether the check counts toward the result (bfloat16 runs are reported only). */
  judged: boolean;
  selfCheck: { error: number; lostWritesError: number | undefined; tolerance: number };
  /** Largest difference over every prompt's prefill positions (transformers' top-5 logits of each). */
  maxPrefillDifference: number;
  /** Largest difference over the first prompt's whole last-position logits row. */
  maxLastLogitsDifference: number;
  /**
   * Per prompt: the steps that must match (before the first reference step with a top-2 margin under 0.05), whether
   * they did, and the first step that differs at all (undefined: all 24 equal).
   */
  greedy: { prompt: number; comparedSteps: number; matched: boolean; firstDifference: number | undefined }[];
  passed: boolean;
}

interface BusyCheck {
  requests: number;
  preemptions: number;
  prefixCacheHits: number;
  mismatches: { request: number; together: number[]; alone: number[] }[];
  passed: boolean;
}

interface StructuredOutputCheck {
  requests: number;
  outputs: string[];
  passed: boolean;
}

interface PerfPoint {
  streams: number;
  requests: number;
  outputTokensPerSecond: number;
  medianTpotMs: number;
  medianTtftMs: number;
  transformersH100: number | undefined;
}

export interface GpuCheckResult {
  date: string;
  device: string;
  dtype: string;
  gpu: GpuDeviceInfo | undefined;
  onnxRuntime: string;
  attentionMetadataEntries: number;
  executionProviders: string[];
  machine: Record<string, unknown>;
  correctness: ModelCheck[];
  busy: BusyCheck | undefined;
  structuredOutputs?: StructuredOutputCheck | undefined;
  perf: PerfPoint[];
  batchOneRunner: { tokensPerSecond: number; weightBytes: number; rooflineTokensPerSecond: number | undefined } | undefined;
  errors: string[];
}

const greedyMargin = 0.05;

function prefillTolerance(dtype: string): number {
  return dtype === 'float32' ? 1e-3 : dtype === 'float16' ? 5e-2 : 0.15;
}

function engineDtype(options: GpuCheckOptions): EngineOptions['dtype'] {
  return options.device === 'cpu' ? 'float32' : (options.dtype ?? 'float16');
}

/** The engine on the checked device: the paged reference runner stands in for the GPU on the CPU. */
function engineDevice(options: GpuCheckOptions): EngineOptions {
  return {
    device: options.device,
    ...(options.device === 'cpu' ? { modelRunner: 'paged-reference' as const } : {}),
    dtype: engineDtype(options),
  };
}

/** PagedModelRunner's dtype option: the one asked for on a GPU (its own default otherwise; the CPU is float32). */
function runnerDtype(options: GpuCheckOptions): { dtype?: 'float16' | 'bfloat16' } {
  return options.device === 'cpu' || options.dtype === undefined ? {} : { dtype: options.dtype };
}

/** One fixture model at one block size on the paged runner. */
async function checkModel(name: CheckpointName, blockSize: number, options: GpuCheckOptions, judged = true): Promise<ModelCheck> {
  const reference = readReference(name);
  const runner = await PagedModelRunner.load(fixturePath(name), {
    numBlocks: 64,
    blockSize,
    device: options.device,
    ...runnerDtype(options),
    maxModelLen: 1024,
    onProgress: () => undefined,
  });
  try {
    const selfCheck = await runner.selfCheck();
    let nextBlock = 0;
    const allocate = (tokens: number): number[] => Array.from({ length: Math.ceil(tokens / blockSize) }, () => nextBlock++ % runner.numBlocks);
    const vocab = runner.config.vocabSize;
    let maxPrefillDifference = 0;
    let maxLastLogitsDifference = 0;
    for (const [index, prompt] of reference.prompts.entries()) {
      const { logits } = await runner.execute([{ tokenIds: prompt.ids, numComputedTokens: 0, blockTable: allocate(prompt.ids.length), logits: 'all' }]);
      prompt.prefill.forEach((expected, position) =>
        expected.ids.forEach((id, rank) => {
          maxPrefillDifference = Math.max(maxPrefillDifference, Math.abs(logits[position * vocab + id]! - expected.logits[rank]!));
        }),
      );
      if (index === 0 && prompt.last_logits_f32_b64 !== undefined) {
        const expected = decodeFloat32Base64(prompt.last_logits_f32_b64);
        const last = logits.subarray((prompt.ids.length - 1) * vocab, prompt.ids.length * vocab);
        expected.forEach((value, id) => (maxLastLogitsDifference = Math.max(maxLastLogitsDifference, Math.abs(last[id]! - value))));
      }
    }
    // All prompts decode together through the pools, 24 greedy steps.
    nextBlock = 0;
    const states = reference.prompts.map((prompt) => ({ table: allocate(prompt.ids.length + 24), computed: 0, next: prompt.ids as number[], generated: [] as number[] }));
    for (let step = 0; step < 24; step += 1) {
      const requests: ModelRunnerRequest[] = states.map((state) => ({ tokenIds: state.next, numComputedTokens: state.computed, blockTable: state.table }));
      const output = await runner.execute(requests);
      states.forEach((state, index) => {
        const best = argmax(output.logits.subarray(output.logitsRowStart[index]! * vocab, (output.logitsRowStart[index]! + 1) * vocab));
        state.computed += state.next.length;
        state.generated.push(best);
        state.next = [best];
      });
    }
    const greedy = reference.prompts.map((prompt, index) => {
      // Steps before the first one whose reference top-2 margin is under 0.05 must match; from there fp16 may differ.
      const firstClose = prompt.greedy.steps.findIndex((step) => step.margin < greedyMargin);
      const comparedSteps = firstClose === -1 ? 24 : firstClose;
      const generated = states[index]!.generated;
      const firstDifference = generated.findIndex((token, step) => token !== prompt.greedy.ids[step]);
      return {
        prompt: index,
        comparedSteps,
        matched: firstDifference === -1 || firstDifference >= comparedSteps,
        firstDifference: firstDifference === -1 ? undefined : firstDifference,
      };
    });
    const tolerance = prefillTolerance(runner.dtype);
    return {
      model: name,
      dtype: runner.dtype,
      blockSize,
      judged,
      selfCheck,
      maxPrefillDifference,
      maxLastLogitsDifference,
      greedy,
      passed: maxPrefillDifference <= tolerance && maxLastLogitsDifference <= tolerance && greedy.every((entry) => entry.matched),
    };
  } finally {
    await runner.release();
  }
}

/** 16 requests (greedy and seeded sampling) in a pool small enough to preempt; each must get its solo output. */
async function checkBusy(options: GpuCheckOptions): Promise<BusyCheck> {
  const reference = readReference('tiny-llama');
  const config = await loadModelConfig(fixturePath('tiny-llama'));
  const bytesPerToken = kvCacheBytesPerToken({ ...config, dtypeBytes: options.device === 'cpu' ? 4 : 2 });
  const llm = await LLM.create(fixturePath('tiny-llama'), {
    ...engineDevice(options),
    blockSize: 16,
    kvCacheMemory: 40 * 16 * bytesPerToken,
    maxModelLen: 400,
    maxNumBatchedTokens: 64,
    maxNumSeqs: 16,
  });
  try {
    const greedy = { temperature: 0, maxTokens: 24, ignoreEos: true };
    const prompts = Array.from({ length: 16 }, (_, index) => reference.prompts[index % 3]!.ids);
    const params = prompts.map((_, index) => (index % 2 === 0 ? greedy : { temperature: 0.9, topP: 0.9, seed: 1000 + index, maxTokens: 24, ignoreEos: true }));
    const together = await llm.generate(prompts, params);
    const stats = llm.makeStats();
    const mismatches: BusyCheck['mismatches'] = [];
    for (let index = 0; index < prompts.length; index += 1) {
      const [alone] = await llm.generate([prompts[index]!], params[index]);
      const a = together[index]!.outputs[0]!.tokenIds;
      const b = alone!.outputs[0]!.tokenIds;
      if (a.join() !== b.join()) mismatches.push({ request: index, together: [...a], alone: [...b] });
    }
    return {
      requests: prompts.length,
      preemptions: stats.numPreemptionsTotal,
      prefixCacheHits: stats.prefixCacheHits,
      mismatches,
      passed: mismatches.length === 0 && stats.numPreemptionsTotal > 0,
    };
  } finally {
    await llm.close();
  }
}

/** Three requests constrained by a bounded JSON schema on tiny-qwen2: each output must parse and validate. */
async function checkStructuredOutputs(options: GpuCheckOptions): Promise<StructuredOutputCheck> {
  const schema = {
    type: 'object',
    properties: { city: { enum: ['Paris', 'Rome', 'Oslo'] }, sunny: { type: 'boolean' } },
    required: ['city', 'sunny'],
    additionalProperties: false,
  };
  const llm = await LLM.create(fixturePath('tiny-qwen2'), {
    ...engineDevice(options),
    kvCacheMemory: '64MiB',
    maxModelLen: 512,
    structuredOutputsConfig: { disableAnyWhitespace: true },
  });
  try {
    const prompts = readReference('tiny-qwen2').prompts.map((prompt) => prompt.ids);
    const params = prompts.map((_, index) => ({ temperature: 0.8, seed: index, maxTokens: 48, structuredOutputs: { json: schema } }));
    const outputs = (await llm.generate(prompts, params)).map((output) => output.outputs[0]!.text);
    const valid = outputs.every((text) => {
      try {
        return satisfiesSchema(JSON.parse(text), schema);
      } catch {
        return false;
      }
    });
    return { requests: prompts.length, outputs, passed: valid };
  } finally {
    await llm.close();
  }
}

/** Decode tokens/s through the real server and pagoda-bench serve, at each stream count. */
async function measurePerf(options: GpuCheckOptions, log: (line: string) => void): Promise<PerfPoint[]> {
  const modelDir = await writeDummyModelDir(smolLm2Shape);
  const maxStreams = Math.max(...options.streams);
  // The KV cache is planned from a profiling run where nvidia-smi reports memory; elsewhere it gets a fixed size.
  let fixedKvCache: string | undefined = options.device === 'cpu' ? '512MiB' : undefined;
  if (fixedKvCache === undefined) {
    try {
      nvidiaSmiProbe().devices();
    } catch (error) {
      fixedKvCache = '8GiB';
      log(`  no device memory probe (${(error as Error).message}); the KV cache gets ${fixedKvCache}`);
    }
  }
  const engine = await AsyncLLM.create(modelDir, {
    ...engineDevice(options),
    ...(options.device === 'cpu' ? {} : { gpuMemoryUtilization: options.gpuMemoryUtilization }),
    ...(fixedKvCache === undefined ? {} : { kvCacheMemory: fixedKvCache }),
    loadFormat: 'dummy',
    maxNumSeqs: maxStreams,
    maxModelLen: 2048,
  });
  for (const line of engine.startupLog) log(`  ${line}`);
  const server = createPagodaServer({ engine, servedModelName: 'smollm2-135m-dummy', version: 'gpu-check' });
  const address = await server.listen(0, '127.0.0.1');
  const baseUrl = `http://127.0.0.1:${address.port}`;
  const points: PerfPoint[] = [];
  try {
    for (const [index, streams] of options.streams.entries()) {
      const requests = Math.max(streams * options.promptsPerStream, 2);
      const serve = parseServeArgs([
        '--base-url', baseUrl,
        '--num-prompts', String(requests),
        '--random-input-len', String(options.inputLength),
        '--random-output-len', String(options.outputLength),
        '--max-concurrency', String(streams),
        '--ignore-eos',
        '--seed', String(index),
        '--disable-tqdm',
      ]);
      const { record } = await runServeCommand(serve, { log: () => undefined });
      const point: PerfPoint = {
        streams,
        requests,
        outputTokensPerSecond: record.output_throughput as number,
        medianTpotMs: record.median_tpot_ms as number,
        medianTtftMs: record.median_ttft_ms as number,
        transformersH100: (transformersH100 as Record<number, number>)[streams],
      };
      log(`  ${streams} streams: ${point.outputTokensPerSecond.toFixed(1)} output tokens/s, median TPOT ${point.medianTpotMs.toFixed(2)} ms`);
      points.push(point);
    }
  } finally {
    await server.close();
    await engine.close();
  }
  return points;
}

/** The runner alone at batch 1 (one sequence decoding after a 128-token prompt): tokens/s and the bytes it reads. */
async function measureBatchOne(options: GpuCheckOptions, gpu: GpuDeviceInfo | undefined): Promise<GpuCheckResult['batchOneRunner']> {
  const modelDir = await writeDummyModelDir(smolLm2Shape);
  const headDim = smolLm2Shape.hidden_size / smolLm2Shape.num_attention_heads;
  const blockSize = options.device === 'cuda' ? defaultGpuBlockSize(headDim, gpu?.computeCapability) : 16;
  const runner = await PagedModelRunner.load(modelDir, {
    loadFormat: 'dummy',
    numBlocks: Math.ceil(4096 / blockSize),
    blockSize,
    device: options.device,
    ...runnerDtype(options),
    maxModelLen: 2048,
    onProgress: () => undefined,
  });
  try {
    const table = Array.from({ length: runner.numBlocks }, (_, block) => block);
    const prompt = Array.from({ length: options.inputLength }, (_, index) => (index * 31) % 32000);
    await runner.execute([{ tokenIds: prompt, numComputedTokens: 0, blockTable: table }]);
    const steps = options.device === 'cpu' ? 4 : 64;
    let computed = prompt.length;
    const start = performance.now();
    for (let step = 0; step < steps; step += 1) {
      await runner.execute([{ tokenIds: [step % 32000], numComputedTokens: computed, blockTable: table }]);
      computed += 1;
    }
    const tokensPerSecond = steps / ((performance.now() - start) / 1000);
    const bandwidth = options.memoryBandwidthGbs;
    return { tokensPerSecond, weightBytes: runner.weightBytes, rooflineTokensPerSecond: bandwidth === undefined ? undefined : (bandwidth * 1e9) / runner.weightBytes };
  } finally {
    await runner.release();
  }
}

/** Runs every part; a part that throws is recorded in `errors` and the others still run. */
export async function runGpuCheck(options: GpuCheckOptions, log: (line: string) => void = console.log): Promise<GpuCheckResult> {
  const errors: string[] = [];
  const attempt = async <T>(label: string, run: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await run();
    } catch (error) {
      const message = `${label}: ${(error as Error).stack ?? String(error)}`;
      errors.push(message);
      log(`FAILED ${message}`);
      return undefined;
    }
  };
  let gpu: GpuDeviceInfo | undefined;
  if (options.device !== 'cpu') {
    try {
      gpu = selectDevice(nvidiaSmiProbe().devices());
    } catch (error) {
      errors.push(`nvidia-smi: ${(error as Error).message}`);
    }
  }
  const memoryBandwidthGbs = options.memoryBandwidthGbs ?? (gpu !== undefined && /H100/.test(gpu.name) ? 3019 : undefined);
  const settings = { ...options, memoryBandwidthGbs };
  const dtype = engineDtype(options)!;
  log(`gpu-check on ${options.device} (${dtype}), onnxruntime ${onnxRuntimeVersion()}${gpu === undefined ? '' : `, ${gpu.name}`}`);

  const correctness: ModelCheck[] = [];
  const models = options.models ?? checkpointNames;
  for (const model of models) {
    const config = await attempt(`${model} config`, () => loadModelConfig(fixturePath(model)));
    if (config === undefined) continue;
    const defaultBlock = options.device === 'cuda' ? defaultGpuBlockSize(config.headDim, gpu?.computeCapability) : 16;
    for (const blockSize of [...new Set([16, defaultBlock])]) {
      const check = await attempt(`${model} at block size ${blockSize}`, () => checkModel(model, blockSize, settings));
      if (check === undefined) continue;
      correctness.push(check);
      log(
        `  ${model} ${check.dtype} block ${blockSize}: prefill max diff ${check.maxPrefillDifference.toExponential(2)}, last logits ${check.maxLastLogitsDifference.toExponential(2)}, ` +
          `greedy ${check.greedy.map((entry) => `${entry.matched ? 'ok' : 'DIFF'}(${entry.comparedSteps} compared, ${entry.firstDifference ?? 24} equal)`).join(' ')}, ` +
          `self-check ${check.selfCheck.error.toExponential(1)} -> ${check.passed ? 'PASS' : 'FAIL'}`,
      );
    }
  }
  if (options.device === 'cuda' && options.dtype !== 'bfloat16') {
    for (const model of models) {
      const config = await loadModelConfig(fixturePath(model));
      const blockSize = defaultGpuBlockSize(config.headDim, gpu?.computeCapability);
      const check = await attempt(`${model} in bfloat16`, () => checkModel(model, blockSize, { ...settings, dtype: 'bfloat16' }, false));
      if (check !== undefined) {
        correctness.push(check);
        log(`  ${model} bfloat16 block ${blockSize} (reported only): prefill max diff ${check.maxPrefillDifference.toExponential(2)}, self-check ${check.selfCheck.error.toExponential(1)}`);
      }
    }
  }
  const busy = await attempt('busy continuous batching', () => checkBusy(settings));
  if (busy !== undefined) log(`  busy run: ${busy.requests} requests, ${busy.preemptions} preemptions, ${busy.mismatches.length} differ from solo -> ${busy.passed ? 'PASS' : 'FAIL'}`);
  const structuredOutputs = await attempt('structured outputs', () => checkStructuredOutputs(settings));
  if (structuredOutputs !== undefined) {
    log(`  structured outputs: ${structuredOutputs.requests} JSON-schema requests, ${structuredOutputs.outputs.map((text) => JSON.stringify(text)).join(', ')} -> ${structuredOutputs.passed ? 'PASS' : 'FAIL'}`);
  }
  const batchOneRunner = options.skipPerf ? undefined : await attempt('batch-1 runner', () => measureBatchOne(settings, gpu));
  const perf = options.skipPerf ? [] : ((await attempt('server performance', () => measurePerf(settings, log))) ?? []);

  const result: GpuCheckResult = {
    date: timestamp(),
    device: options.device,
    dtype,
    gpu,
    onnxRuntime: onnxRuntimeVersion(),
    attentionMetadataEntries: metadataEntriesFor(onnxRuntimeVersion()),
    executionProviders: availableExecutionProviders(),
    machine: machineInfo(),
    correctness,
    busy,
    structuredOutputs,
    perf,
    batchOneRunner,
    errors,
  };
  await saveJson(join(options.outDir, 'gpu-check.json'), result);
  await writeFile(join(options.outDir, 'gpu-notes.md'), formatGpuNotes(result));
  log(`wrote ${join(options.outDir, 'gpu-check.json')} and ${join(options.outDir, 'gpu-notes.md')}`);
  return result;
}

/** The notes file: card, versions and every number, in tables. */
export function formatGpuNotes(result: GpuCheckResult): string {
  const lines: string[] = [];
  const card = result.gpu === undefined ? result.device : `${result.gpu.name} (${(result.gpu.totalBytes / 2 ** 30).toFixed(1)} GiB${result.gpu.computeCapability === undefined ? '' : `, sm ${result.gpu.computeCapability.join('.')}`})`;
  lines.push(`# GPU check, ${result.date}`, '');
  lines.push(`- device: ${result.device}, ${card}; dtype ${result.dtype}`);
  lines.push(`- onnxruntime-node ${result.onnxRuntime} (PagedAttention attention_metadata: ${result.attentionMetadataEntries} entries); execution providers: ${result.executionProviders.join(', ')}`);
  lines.push(`- host: Node.js ${String(result.machine.node)}, ${String(result.machine.cpu)}, ${String(result.machine.cores)} cores`, '');
  lines.push('## Correctness against transformers', '');
  lines.push(
    '| model | dtype | block size | prefill max diff | last-logits max diff | greedy per prompt: steps that must match / steps equal of 24 | pool self-check | result |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const check of result.correctness) {
    lines.push(
      `| ${check.model} | ${check.dtype} | ${check.blockSize} | ${check.maxPrefillDifference.toExponential(2)} | ${check.maxLastLogitsDifference.toExponential(2)} | ` +
        `${check.greedy.map((entry) => `${entry.comparedSteps}/${entry.firstDifference ?? 24}${entry.matched ? '' : ' (FAIL)'}`).join(', ')} | ` +
        `${check.selfCheck.error.toExponential(1)} (lost writes ${check.selfCheck.lostWritesError?.toExponential(1) ?? 'n/a'}) | ${check.judged ? (check.passed ? 'pass' : 'FAIL') : `${check.passed ? 'within' : 'outside'} 0.15 (reported only)`} |`,
    );
  }
  if (result.busy !== undefined) {
    lines.push('', `Busy run (tiny-llama, 40 blocks of 16 tokens, 16 requests): ${result.busy.preemptions} preemptions, ${result.busy.prefixCacheHits} prefix-cache hit tokens, ` +
      `${result.busy.mismatches.length} requests differ from their solo output: ${result.busy.passed ? 'pass' : 'FAIL'}.`);
  }
  if (result.structuredOutputs !== undefined) {
    lines.push('', `Structured outputs (tiny-qwen2, a bounded JSON schema, XGrammar bitmasks): ${result.structuredOutputs.requests} requests, ` +
      `outputs ${result.structuredOutputs.outputs.map((text) => `\`${text}\``).join(', ')}: ${result.structuredOutputs.passed ? 'pass' : 'FAIL'}.`);
  }
  if (result.perf.length > 0 || result.batchOneRunner !== undefined) {
    lines.push('', '## Decode throughput, SmolLM2-135M-shaped dummy model', '');
    if (result.perf.length > 0) {
      lines.push('Through `pagoda serve`\'s server and `pagoda-bench serve` (random prompts, ignore_eos), output tokens/s:', '');
      lines.push('| streams | Pagoda | median TPOT ms | transformers on an H100 | ratio |', '|---|---|---|---|---|');
      for (const point of result.perf) {
        const ratio = point.transformersH100 === undefined ? '' : `${(point.outputTokensPerSecond / point.transformersH100).toFixed(1)}×`;
        lines.push(`| ${point.streams} | ${point.outputTokensPerSecond.toFixed(1)} | ${point.medianTpotMs.toFixed(2)} | ${point.transformersH100 ?? ''} | ${ratio} |`);
      }
    }
    const one = result.batchOneRunner;
    if (one !== undefined) {
      const roofline = one.rooflineTokensPerSecond;
      lines.push(
        '',
        `The runner alone at batch 1: ${one.tokensPerSecond.toFixed(1)} tokens/s over ${(one.weightBytes / 2 ** 20).toFixed(1)} MiB of weights` +
          (roofline === undefined ? '.' : `; the memory roofline is ${roofline.toFixed(0)} tokens/s, so ${((100 * one.tokensPerSecond) / roofline).toFixed(1)}% of it.`),
      );
    }
  }
  if (result.errors.length > 0) lines.push('', '## Errors', '', ...result.errors.map((error) => `- ${error.split('\n')[0]}`));
  return `${lines.join('\n')}\n`;
}

export async function gpuCheckMain(argv: readonly string[]): Promise<void> {
  const result = await runGpuCheck(parseGpuCheckArgs(argv));
  const failed = result.errors.length > 0 || result.correctness.some((check) => check.judged && !check.passed) || result.busy?.passed === false || result.structuredOutputs?.passed === false;
  if (failed) process.exitCode = 1;
}

// Decode tokens/s of the CPU model runner at long contexts: dummy SmolLM2 weights, every stream at the same context,
// one token per stream per step, pools filled (see cells/decode-steps.ts). Each measurement runs in a fresh process,
// so its peak RSS is its own. With --baseline, the same measurements also run against another checkout of the repo
// (one with its dependencies installed), one right after the other for each point, so their ratio comes from one run:
//   git archive <base commit> | tar -x -C /tmp/pagoda-base
//   (cd /tmp/pagoda-base && ONNXRUNTIME_NODE_INSTALL=skip npx -y pnpm@12.4.2 install)
//   micro long-context --baseline /tmp/pagoda-base [--contexts 128,2048,8192] [--streams 1,8,32]
//                      [--short-streams 1,8,32,64] [--threads 2] [--rounds 1]
// Contexts under 1,024 tokens (the short point: 64 steps from 128 tokens, the issue table's 128 + 64) use
// --short-streams; the others --streams, with 8 steps (4 from 4,096 tokens on).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { integerOption, listOption, parseOptions, UsageError } from '../cli-args';

interface CellResult {
  contextTokens: number;
  streams: number;
  steps: number;
  stepMs: number;
  minStepMs: number;
  tokensPerSecond: number;
  kvBytesPerStep: number;
  kvGBps: number;
  poolBytes: number;
  weightBytes: number;
  peakRssBytes: number;
  loadAverage: number;
}

interface Point {
  contextTokens: number;
  streams: number;
  /** Every round's measurement of each runner. */
  current: CellResult[];
  baseline?: CellResult[];
}

const here = dirname(fileURLToPath(import.meta.url));
const repositoryRoot = join(here, '..', '..', '..', '..');
const engineEntry = (root: string): string => join(root, 'packages', 'engine', 'src', 'index.ts');

function stepsFor(contextTokens: number): number {
  return contextTokens < 1024 ? 64 : contextTokens < 4096 ? 8 : 4;
}

/** Runs one measurement in a child Node with this process's loader flags (tsx, the source condition). */
function runCell(root: string, contextTokens: number, streams: number, threads: number): Promise<CellResult> {
  const args = [...process.execArgv, join(here, 'cells', 'decode-steps.ts'), engineEntry(root), String(contextTokens), String(streams), String(stepsFor(contextTokens)), String(threads)];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = output.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || !line.startsWith('{')) reject(new Error(`decode-steps ${contextTokens} × ${streams} exited with ${code}: ${output}`));
      else resolvePromise(JSON.parse(line) as CellResult);
    });
  });
}

const best = (results: readonly CellResult[]): CellResult =>
  results.reduce((left, right) => (right.tokensPerSecond > left.tokensPerSecond ? right : left));

export default async function longContextBenchmark(args: string[]): Promise<object> {
  const options = parseOptions(args, {
    baseline: { type: 'string' },
    contexts: { type: 'string', default: '128,2048,8192' },
    streams: { type: 'string', default: '1,8,32' },
    'short-streams': { type: 'string', default: '1,8,32,64' },
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '1' },
  });
  const baseline = options.baseline === undefined ? undefined : resolve(options.baseline);
  if (baseline !== undefined && !existsSync(engineEntry(baseline))) {
    throw new UsageError(`--baseline ${baseline} holds no packages/engine/src/index.ts`);
  }
  const threads = integerOption('threads', options.threads, 1)!;
  const rounds = integerOption('rounds', options.rounds, 1)!;
  const contexts = listOption(options.contexts).map((value) => integerOption('contexts', value, 1)!);
  const streamsFor = (contextTokens: number): number[] =>
    listOption(contextTokens < 1024 ? options['short-streams'] : options.streams).map((value) => integerOption('streams', value, 1)!);

  const points: Point[] = [];
  for (const contextTokens of contexts) {
    for (const streams of streamsFor(contextTokens)) {
      const point: Point = { contextTokens, streams, current: [], ...(baseline === undefined ? {} : { baseline: [] }) };
      for (let round = 0; round < rounds; round += 1) {
        if (baseline !== undefined) point.baseline!.push(await runCell(baseline, contextTokens, streams, threads));
        point.current.push(await runCell(repositoryRoot, contextTokens, streams, threads));
      }
      const current = best(point.current);
      const before = point.baseline === undefined ? undefined : best(point.baseline);
      const gib = (bytes: number): string => (bytes / 2 ** 30).toFixed(2);
      console.log(
        `context ${contextTokens} × ${streams} streams: ${current.tokensPerSecond.toFixed(1)} tokens/s ` +
          `(${current.stepMs.toFixed(0)} ms/step, KV read ${current.kvGBps.toFixed(1)} GB/s, peak RSS ${gib(current.peakRssBytes)} GiB, load ${current.loadAverage.toFixed(1)})` +
          (before === undefined
            ? ''
            : `; baseline ${before.tokensPerSecond.toFixed(1)} (${before.stepMs.toFixed(0)} ms/step, peak RSS ${gib(before.peakRssBytes)} GiB): ` +
              `${(current.tokensPerSecond / before.tokensPerSecond).toFixed(2)}×`),
      );
      points.push(point);
    }
  }
  return {
    model: 'dummy SmolLM2-135M shape (hidden 576, 30 layers, 9 heads, 3 KV heads, vocab 49152), float32',
    intraOpNumThreads: threads,
    blockSize: 16,
    rounds,
    baseline: baseline ?? null,
    note: 'runner-level decode: one token per stream per step, contexts growing by one token per step; best round by tokens/s',
    points: points.map((point) => {
      const current = best(point.current);
      const before = point.baseline === undefined ? undefined : best(point.baseline);
      return {
        contextTokens: point.contextTokens,
        streams: point.streams,
        current,
        ...(before === undefined ? {} : { baseline: before, speedup: current.tokensPerSecond / before.tokensPerSecond }),
        rounds: { current: point.current, ...(point.baseline === undefined ? {} : { baseline: point.baseline }) },
      };
    }),
  };
}

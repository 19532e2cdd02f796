import type { TextTokenizer } from '@pagoda/engine';
import { type LLM } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { integerOption, listOption, parseOptions, UsageError } from '../cli-args';
import { exportModelGguf } from '../gguf/export-llama';
import { createBenchmarkLlm, engineOptionSpecs, parseEngineArgs, promptVocabulary } from '../offline/engine-args';
import { machineInfo, saveJson } from '../results';
import { randomDataset } from '../serve/datasets';
import { decodeTokensPerSecond } from './decode-rate';
import { generateGreedy, loadLlamaCpp } from './llama-cpp-runner';
import { compareAccuracy, printAccuracy } from './compare-accuracy';
import { pagodaRunsFirst, summarizeRounds } from './rounds';

export const compareUsage = `Usage: pagoda-bench compare-llama-cpp [options]

Decode tokens/s of Pagoda (the LLM class) and llama.cpp (node-llama-cpp, CPU prebuilt binary) on the same weights
and the same token-id prompts, at several numbers of concurrent streams, side by side with their ratio; then the
accuracy of both against Pagoda's float32 run of the same weights. The model is exported to GGUF first (dummy
weights: the engine's own, same seed) at the bits asked for: F32, or Q8_0 / Q4_0, which Pagoda runs as int8 / int4
on the identical quantized values (its quantizer writes the very blocks ggml's reference quantizer does; Q4_0 keeps
the embedding and head at Q8_0, as Pagoda's int4). Greedy, ignore_eos, after a short warm-up; with --rounds N each
stream count runs N times per engine, the two engines right after each other and in alternating order, and the
ratio is the median of each round's own ratio (the machine is shared: a ratio from one round says little). Decode
tokens/s counts the tokens made after every stream had its first token, over the time from then to the last token
(prefill left out); both engines get the same number of threads.

Accuracy: teacher-forced on the tiny-llama fixture's prompts followed by its reference greedy tokens, the
next-token distribution at each of the 24 greedy steps of each prompt, for this model and for the tiny-llama
checkpoint itself: mean KL divergence from Pagoda float32 and top-1 agreement with it.

  --quantization Q       f32 (default), q8_0 or q4_0
  --model DIR            a Llama checkpoint folder (default: the dummy SmolLM2-135M-shaped model)
  --load-format FORMAT   safetensors or dummy (default: dummy without --model)
  --streams LIST         concurrent streams (default 1,8,32)
  --rounds N             runs per engine and stream count, paired and alternating (default 1)
  --input-len N          prompt tokens (default 32)
  --output-len N         tokens generated per stream (default 64)
  --threads N            threads for each engine: ONNX Runtime intra-op and llama.cpp (default: one per core)
  --accuracy-level N     Pagoda's MatMulNBits accuracy_level (default the engine's)
  --skip-accuracy        speed only
  --seed N               the prompts' seed (default 0)
  --output-json FILE     write the result as JSON
  --kv-cache-memory SIZE Pagoda's KV cache (default 1GiB)`;

/** Each --quantization: the GGUF type llama.cpp runs and Pagoda's quantization of the same values. */
const bitsOptions = {
  f32: { ggufType: 'F32', pagoda: undefined },
  q8_0: { ggufType: 'Q8_0', pagoda: 'int8' },
  q4_0: { ggufType: 'Q4_0', pagoda: 'int4' },
} as const;

export interface EngineRun {
  readonly streams: number;
  readonly decode_tokens_per_s: number;
  readonly output_tokens_per_s: number;
  readonly mean_ttft_ms: number;
  readonly elapsed_s: number;
}

function summarizeRun(streams: number, tokenTimes: readonly (readonly number[])[], elapsedSeconds: number): EngineRun {
  const tokens = tokenTimes.reduce((sum, times) => sum + times.length, 0);
  return {
    streams,
    decode_tokens_per_s: decodeTokensPerSecond(tokenTimes).tokensPerSecond,
    output_tokens_per_s: tokens / elapsedSeconds,
    mean_ttft_ms: (tokenTimes.reduce((sum, times) => sum + (times[0] ?? 0), 0) / tokenTimes.length) * 1000,
    elapsed_s: elapsedSeconds,
  };
}

/** Pagoda's token times, from each request's first-token time and inter-token latencies, relative to the submission. */
async function runPagoda(llm: LLM, prompts: readonly number[][], outputLength: number): Promise<{ run: EngineRun; tokens: number[][] }> {
  const submitted = performance.now() / 1000;
  const outputs = await llm.generate(prompts, { temperature: 0, maxTokens: outputLength, ignoreEos: true });
  const elapsed = performance.now() / 1000 - submitted;
  const tokenTimes = outputs.map((output) => {
    const metrics = output.metrics;
    if (metrics === undefined || metrics.firstTokenTime === undefined) throw new Error('Pagoda returned no request metrics');
    const times = [metrics.firstTokenTime - metrics.arrivalTime];
    for (const gap of metrics.interTokenLatencies) times.push(times.at(-1)! + gap);
    return times;
  });
  return { run: summarizeRun(prompts.length, tokenTimes, elapsed), tokens: outputs.map((output) => [...output.outputs[0]!.tokenIds]) };
}

/** How many leading greedy tokens the two engines agree on, averaged over streams: a check that the weights match. */
function meanCommonPrefix(left: readonly (readonly number[])[], right: readonly (readonly number[])[]): number {
  let total = 0;
  left.forEach((tokens, index) => {
    let length = 0;
    while (length < tokens.length && tokens[length] === right[index]?.[length]) length++;
    total += length;
  });
  return total / left.length;
}

export async function compareMain(argv: readonly string[]): Promise<void> {
  const values = parseOptions(argv, {
    model: engineOptionSpecs.model,
    'load-format': engineOptionSpecs['load-format'],
    quantization: { type: 'string', default: 'f32' },
    'accuracy-level': { type: 'string' },
    'skip-accuracy': { type: 'boolean', default: false },
    'kv-cache-memory': { type: 'string', default: '1GiB' },
    streams: { type: 'string', default: '1,8,32' },
    rounds: { type: 'string', default: '1' },
    'input-len': { type: 'string', default: '32' },
    'output-len': { type: 'string', default: '64' },
    threads: { type: 'string' },
    seed: { type: 'string', default: '0' },
    'output-json': { type: 'string' },
  });
  const streams = listOption(values.streams).map((value) => integerOption('streams', value, 1)!);
  if (streams.length === 0) throw new UsageError('--streams needs at least one number');
  const inputLength = integerOption('input-len', values['input-len'], 1)!;
  const outputLength = integerOption('output-len', values['output-len'], 2)!;
  const threads = integerOption('threads', values.threads, 1) ?? cpus().length;
  const seed = integerOption('seed', values.seed, 0)!;
  const rounds = integerOption('rounds', values.rounds, 1)!;
  const maxStreams = Math.max(...streams);
  const bits = bitsOptions[values.quantization as keyof typeof bitsOptions];
  if (bits === undefined) throw new UsageError(`--quantization must be f32, q8_0 or q4_0, got ${JSON.stringify(values.quantization)}`);
  const accuracyLevel = integerOption('accuracy-level', values['accuracy-level'], 0);

  const loaded = await loadLlamaCpp();
  if ('error' in loaded) throw new Error(`node-llama-cpp cannot load its prebuilt CPU binary here: ${loaded.error}`);
  const engine = parseEngineArgs({
    model: values.model,
    'load-format': values['load-format'],
    'kv-cache-memory': values['kv-cache-memory'],
    'max-num-seqs': String(maxStreams),
    'max-model-len': String(inputLength + outputLength + 16),
    'intra-op-num-threads': String(threads),
    quantization: bits.pagoda,
    'accuracy-level': values['accuracy-level'],
  });
  const { llm, modelLabel, close } = await createBenchmarkLlm(engine);
  const directory = await mkdtemp(join(tmpdir(), 'pagoda-bench-gguf-'));
  try {
    const ggufFile = join(directory, 'model.gguf');
    const weights = engine.options.loadFormat === 'dummy' ? ('dummy' as const) : ('checkpoint' as const);
    console.log(`exporting ${modelLabel} to GGUF (${bits.ggufType})...`);
    await exportModelGguf(llm.context.modelDir, ggufFile, { weights, seed: llm.context.options.seed, type: bits.ggufType });
    const model = await loaded.llama.loadModel({ modelPath: ggufFile, gpuLayers: 0 });
    const tokenizer: TextTokenizer = llm.tokenizer;
    const prompts = randomDataset({
      numPrompts: maxStreams,
      inputLength,
      outputLength,
      rangeRatio: 0,
      prefixLength: 0,
      ...promptVocabulary(tokenizer, llm.context.modelConfig.vocabSize),
      seed,
    }).map((request) => request.prompt as number[]);
    try {
      // Warm-up: first runs pay for allocations and caches in both engines.
      await runPagoda(llm, prompts.slice(0, 1), 4);
      await generateGreedy(model, prompts.slice(0, 1), 4, { threads });
      const rows: Array<{
        streams: number;
        pagoda: EngineRun;
        llama_cpp: EngineRun;
        decode_ratio: number;
        decode_ratio_range: readonly [number, number];
        output_ratio: number;
        mean_common_greedy_prefix: number;
        load_average: { before: number; after: number };
        rounds: Array<{ pagoda_first: boolean; pagoda: EngineRun; llama_cpp: EngineRun; decode_ratio: number }>;
      }> = [];
      for (const count of streams) {
        // Different prompts per count would change little; a fresh slice from offset `count` keeps the prefix cache out.
        const batch = Array.from({ length: count }, (_, index) => prompts[(index + count) % prompts.length]!);
        // The machine's 1-minute load average around each stream count: on a shared machine it says which rows to trust.
        const before = loadavg()[0]!;
        const pagodaRuns: EngineRun[] = [];
        const llamaCppRuns: EngineRun[] = [];
        let pagodaTokens: number[][] = [];
        let llamaCppTokens: number[][] = [];
        for (let round = 0; round < rounds; round += 1) {
          const runPagodaRound = async (): Promise<void> => {
            console.log(`${count} stream(s), round ${round + 1}/${rounds}: Pagoda...`);
            const { run, tokens } = await runPagoda(llm, batch, outputLength);
            pagodaRuns.push(run);
            if (round === 0) pagodaTokens = tokens;
          };
          const runLlamaCppRound = async (): Promise<void> => {
            console.log(`${count} stream(s), round ${round + 1}/${rounds}: llama.cpp...`);
            const timings = await generateGreedy(model, batch, outputLength, { threads });
            llamaCppRuns.push(summarizeRun(count, timings.tokenTimes, timings.elapsedSeconds));
            if (round === 0) llamaCppTokens = timings.tokens;
          };
          if (pagodaRunsFirst(round)) {
            await runPagodaRound();
            await runLlamaCppRound();
          } else {
            await runLlamaCppRound();
            await runPagodaRound();
          }
        }
        const summary = summarizeRounds(pagodaRuns, llamaCppRuns);
        rows.push({
          streams: count,
          pagoda: summary.pagoda,
          llama_cpp: summary.llamaCpp,
          decode_ratio: summary.decodeRatio,
          decode_ratio_range: summary.decodeRatioRange,
          output_ratio: summary.pagoda.output_tokens_per_s / summary.llamaCpp.output_tokens_per_s,
          mean_common_greedy_prefix: meanCommonPrefix(pagodaTokens, llamaCppTokens),
          load_average: { before, after: loadavg()[0]! },
          rounds: pagodaRuns.map((pagoda, round) => ({
            pagoda_first: pagodaRunsFirst(round),
            pagoda,
            llama_cpp: llamaCppRuns[round]!,
            decode_ratio: summary.decodeRatios[round]!,
          })),
        });
      }
      const roundsLabel = rounds === 1 ? 'one run each' : `median of ${rounds} paired rounds; ratio: median of the rounds' ratios (range)`;
      console.log(`\nDecode tokens/s, ${modelLabel}, ${inputLength} prompt + ${outputLength} output tokens per stream, ${threads} thread(s) each, ${roundsLabel}`);
      const ratioWidth = rounds === 1 ? 7 : 18;
      console.log(`${'streams'.padStart(8)} ${'Pagoda'.padStart(10)} ${'llama.cpp'.padStart(10)} ${'ratio'.padStart(ratioWidth)}   ${'TTFT ms (P / l)'.padStart(17)}   load average`);
      for (const row of rows) {
        const load = row.load_average;
        const [low, high] = row.decode_ratio_range;
        const ratio = row.decode_ratio.toFixed(2) + (rounds === 1 ? '' : ` (${low.toFixed(2)}-${high.toFixed(2)})`);
        console.log(
          `${String(row.streams).padStart(8)} ${row.pagoda.decode_tokens_per_s.toFixed(1).padStart(10)} ${row.llama_cpp.decode_tokens_per_s.toFixed(1).padStart(10)} ${ratio.padStart(ratioWidth)}   ${`${row.pagoda.mean_ttft_ms.toFixed(0)} / ${row.llama_cpp.mean_ttft_ms.toFixed(0)}`.padStart(17)}   ${load.before.toFixed(1)} / ${load.after.toFixed(1)}`,
        );
      }
      const accuracy = values['skip-accuracy']
        ? undefined
        : await compareAccuracy({
            llama: loaded.llama,
            models: [
              { label: modelLabel, modelDir: llm.context.modelDir, weights, seed: llm.context.options.seed },
              ...(values.model === undefined ? [{ label: 'tiny-llama checkpoint', modelDir: fixturePath('tiny-llama'), weights: 'checkpoint' as const, seed: 0 }] : []),
            ],
            bits,
            accuracyLevel,
            threads,
            directory,
          });
      const result = {
        benchmark: 'compare-llama-cpp',
        model: modelLabel,
        quantization: { llama_cpp: bits.ggufType, pagoda: bits.pagoda ?? 'float32', accuracy_level: llm.context.options.accuracyLevel },
        weights: engine.options.loadFormat,
        input_len: inputLength,
        output_len: outputLength,
        threads,
        node_llama_cpp: '3.21.1',
        machine: machineInfo(),
        rounds,
        note: 'rounds: runs per engine and stream count, each pair one right after the other, alternating which engine goes first; pagoda / llama_cpp: the run with the median decode rate; decode_ratio: the median of the rounds\' Pagoda / llama.cpp; mean_common_greedy_prefix: leading greedy tokens both engines agree on (out of output_len, first round), a check that they run the same weights',
        rows,
        accuracy,
      };
      if (accuracy !== undefined) printAccuracy(accuracy, bits.ggufType);
      console.log(JSON.stringify(result, null, 2));
      if (values['output-json'] !== undefined) {
        await saveJson(values['output-json'], result);
        console.log(`saved ${values['output-json']}`);
      }
    } finally {
      await model.dispose();
    }
  } finally {
    await close();
    await rm(directory, { recursive: true, force: true });
  }
}

import { TextTokenizer } from '@pagoda/engine';
import { basename, join } from 'node:path';
import { integerOption, listOption, numberOption, parseOptions, UsageError } from '../cli-args';
import type { ProgressStream } from '../progress-bar';
import { machineInfo, saveJson, timestamp } from '../results';
import { runServeBenchmark } from './benchmark';
import type { RequestResult } from './client';
import { type BenchmarkRequest, jsonlDataset, randomDataset } from './datasets';
import { computeMetrics, formatMetricsTable, type GoodputSlos, type MetricName, metricNames, metricsRecord, type BenchmarkMetrics } from './metrics';

export const serveUsage = `Usage: pagoda-bench serve [--base-url URL] [--model NAME] [options]

Load-tests an OpenAI-compatible server through streaming /v1/completions, as \`vllm bench serve\` does.

Server
  --base-url URL              the server (default http://127.0.0.1:8000)
  --endpoint PATH             default /v1/completions
  --model NAME                the model name to send (default: the first one /v1/models lists)
  --tokenizer DIR             a checkpoint folder whose tokenizer gives the random dataset's vocabulary and special
                              tokens and counts text prompts' tokens (default: none)
  --extra-body JSON           fields merged into every request body, e.g. '{"temperature":0.7}'
Dataset
  --dataset-name NAME         random (default) or jsonl
  --dataset-path FILE         for jsonl: one {"prompt": text or token ids, "output_len"?: n} per line
  --num-prompts N             requests to send (default 1000)
  --random-input-len N        prompt tokens (default 1024)
  --random-output-len N       max_tokens (default 128); also the jsonl default
  --random-range-ratio R      lengths uniform in [len·(1−R), len·(1+R)] (default 0)
  --random-prefix-len N       tokens shared by every prompt, before its own (default 0)
  --random-vocab-size N       draw prompt token ids below N (default: the tokenizer's size, else 32000)
Load
  --request-rate R            requests per second, Poisson arrivals (default inf: all at once)
  --burstiness B              gamma shape of the gaps: 1 Poisson, <1 burstier, >1 more even (default 1)
  --max-concurrency N         the most requests in flight (default: no limit)
  --ignore-eos                send ignore_eos so every request generates its max_tokens
  --structured-output MODE    none (default), or json: the same load four times, without, with, with and without
                              a JSON schema (structured_outputs.json: an array of digits as long as max_tokens, so
                              the grammar constrains every token), reporting output tokens/s of both and their ratio
  --seed N                    seeds the dataset and the arrivals (default 0)
Metrics and results
  --percentile-metrics LIST   of ttft,tpot,itl,e2el (default ttft,tpot,itl,e2el)
  --metric-percentiles LIST   e.g. 50,90,99 (default 99)
  --goodput KEY:MS ...        SLOs for goodput: ttft, tpot, e2el in ms, e.g. --goodput ttft:200 tpot:50
  --save-result               write the result as JSON
  --save-detailed             also write per-request lengths, TTFTs, ITLs, texts and errors
  --result-dir DIR            where to write it (default: the current folder)
  --result-filename NAME      the file name (default pagoda-bench-serve-<rate>qps[-concurrency<n>]-<model>-<time>.json)
  --disable-tqdm              no progress bar (it is drawn only on a terminal anyway)`;

export interface ServeCommandOptions {
  baseUrl: string;
  endpoint: string;
  model: string | undefined;
  tokenizer: string | undefined;
  extraBody: Record<string, unknown> | undefined;
  datasetName: 'random' | 'jsonl';
  datasetPath: string | undefined;
  numPrompts: number;
  randomInputLength: number;
  randomOutputLength: number;
  randomRangeRatio: number;
  randomPrefixLength: number;
  randomVocabSize: number | undefined;
  requestRate: number;
  burstiness: number;
  maxConcurrency: number | undefined;
  ignoreEos: boolean;
  structuredOutput: 'none' | 'json';
  seed: number;
  percentileMetrics: MetricName[];
  metricPercentiles: number[];
  goodput: GoodputSlos | undefined;
  saveResult: boolean;
  saveDetailed: boolean;
  resultDir: string;
  resultFilename: string | undefined;
  disableProgress: boolean;
}

export function parseServeArgs(argv: readonly string[]): ServeCommandOptions {
  const values = parseOptions(
    argv,
    {
      'base-url': { type: 'string', default: 'http://127.0.0.1:8000' },
      endpoint: { type: 'string', default: '/v1/completions' },
      model: { type: 'string' },
      tokenizer: { type: 'string' },
      'extra-body': { type: 'string' },
      'dataset-name': { type: 'string', default: 'random' },
      'dataset-path': { type: 'string' },
      'num-prompts': { type: 'string', default: '1000' },
      'random-input-len': { type: 'string', default: '1024' },
      'random-output-len': { type: 'string', default: '128' },
      'random-range-ratio': { type: 'string', default: '0' },
      'random-prefix-len': { type: 'string', default: '0' },
      'random-vocab-size': { type: 'string' },
      'request-rate': { type: 'string', default: 'inf' },
      burstiness: { type: 'string', default: '1' },
      'max-concurrency': { type: 'string' },
      'ignore-eos': { type: 'boolean', default: false },
      'structured-output': { type: 'string', default: 'none' },
      seed: { type: 'string', default: '0' },
      'percentile-metrics': { type: 'string', default: 'ttft,tpot,itl,e2el' },
      'metric-percentiles': { type: 'string', default: '99' },
      goodput: { type: 'string', multiple: true },
      'save-result': { type: 'boolean', default: false },
      'save-detailed': { type: 'boolean', default: false },
      'result-dir': { type: 'string', default: '.' },
      'result-filename': { type: 'string' },
      'disable-tqdm': { type: 'boolean', default: false },
    },
    ['goodput'],
  );
  const datasetName = values['dataset-name'];
  if (datasetName !== 'random' && datasetName !== 'jsonl') throw new UsageError(`--dataset-name must be random or jsonl, got ${JSON.stringify(datasetName)}`);
  if (datasetName === 'jsonl' && values['dataset-path'] === undefined) throw new UsageError('--dataset-name jsonl needs --dataset-path FILE');
  const structuredOutput = values['structured-output'];
  if (structuredOutput !== 'none' && structuredOutput !== 'json') throw new UsageError(`--structured-output must be none or json, got ${JSON.stringify(structuredOutput)}`);
  const percentileMetrics = listOption(values['percentile-metrics']);
  for (const name of percentileMetrics) {
    if (!(metricNames as readonly string[]).includes(name)) throw new UsageError(`--percentile-metrics: unknown metric ${JSON.stringify(name)} (use ${metricNames.join(', ')})`);
  }
  const metricPercentiles = listOption(values['metric-percentiles']).map(
    (value) => numberOption('metric-percentiles', value, (p) => p >= 0 && p <= 100, 'percentiles in [0, 100]')!,
  );
  let extraBody: Record<string, unknown> | undefined;
  if (values['extra-body'] !== undefined) {
    try {
      extraBody = JSON.parse(values['extra-body']) as Record<string, unknown>;
    } catch {
      throw new UsageError(`--extra-body must be a JSON object, got ${JSON.stringify(values['extra-body'])}`);
    }
    if (typeof extraBody !== 'object' || extraBody === null || Array.isArray(extraBody)) throw new UsageError('--extra-body must be a JSON object');
  }
  return {
    baseUrl: values['base-url'],
    endpoint: values.endpoint,
    model: values.model,
    tokenizer: values.tokenizer,
    extraBody,
    datasetName,
    datasetPath: values['dataset-path'],
    numPrompts: integerOption('num-prompts', values['num-prompts'], 1)!,
    randomInputLength: integerOption('random-input-len', values['random-input-len'], 0)!,
    randomOutputLength: integerOption('random-output-len', values['random-output-len'], 1)!,
    randomRangeRatio: numberOption('random-range-ratio', values['random-range-ratio'], (r) => r >= 0 && r < 1, 'in [0, 1)')!,
    randomPrefixLength: integerOption('random-prefix-len', values['random-prefix-len'], 0)!,
    randomVocabSize: integerOption('random-vocab-size', values['random-vocab-size'], 1),
    requestRate: numberOption('request-rate', values['request-rate'], (rate) => rate > 0, 'a positive number or inf')!,
    burstiness: numberOption('burstiness', values.burstiness, (b) => b > 0 && Number.isFinite(b), 'a positive number')!,
    maxConcurrency: integerOption('max-concurrency', values['max-concurrency'], 1),
    ignoreEos: values['ignore-eos'],
    structuredOutput,
    seed: integerOption('seed', values.seed, 0)!,
    percentileMetrics: percentileMetrics as MetricName[],
    metricPercentiles,
    goodput: values.goodput === undefined ? undefined : parseGoodput(values.goodput),
    saveResult: values['save-result'],
    saveDetailed: values['save-detailed'],
    resultDir: values['result-dir'],
    resultFilename: values['result-filename'],
    disableProgress: values['disable-tqdm'],
  };
}

/**
 * The benchmark's schema: an object holding an array of single digits, at least `length` long, so that the grammar
 * stays active for every output token (a bounded schema would finish early and leave the rest unconstrained).
 */
export function digitsSchema(length: number): Record<string, unknown> {
  return {
    type: 'object',
    properties: { digits: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, minItems: length } },
    required: ['digits'],
    additionalProperties: false,
  };
}

/** `ttft:200`, `tpot:50`, `e2el:1000` (also comma-separated) into SLOs in milliseconds. */
export function parseGoodput(items: readonly string[]): GoodputSlos {
  const slos: GoodputSlos = {};
  for (const item of items.flatMap(listOption)) {
    const [name, value, ...rest] = item.split(':');
    const milliseconds = Number(value);
    if (rest.length > 0 || (name !== 'ttft' && name !== 'tpot' && name !== 'e2el') || !(milliseconds >= 0) || value?.trim() === '') {
      throw new UsageError(`--goodput takes KEY:MILLISECONDS with KEY one of ttft, tpot, e2el; got ${JSON.stringify(item)}`);
    }
    slos[name] = milliseconds;
  }
  return slos;
}

/** The model the server lists first, for runs without --model. */
export async function firstServedModel(baseUrl: string, fetchFunction: typeof fetch = fetch): Promise<string> {
  const response = await fetchFunction(`${baseUrl.replace(/\/+$/, '')}/v1/models`);
  if (!response.ok) throw new Error(`GET /v1/models answered HTTP ${response.status}; pass --model`);
  const body = (await response.json()) as { data?: Array<{ id?: string }> };
  const id = body.data?.[0]?.id;
  if (typeof id !== 'string') throw new Error('GET /v1/models listed no model; pass --model');
  return id;
}

export interface ServeCommandResult {
  readonly metrics: BenchmarkMetrics;
  readonly record: Record<string, unknown>;
  readonly file: string | undefined;
}

/** Builds the dataset, runs the benchmark, prints vLLM's table through `log` and saves the JSON if asked. */
export async function runServeCommand(
  options: ServeCommandOptions,
  io: { log: (line: string) => void; progress?: ProgressStream | undefined; fetch?: typeof fetch },
): Promise<ServeCommandResult> {
  const fetchFunction = io.fetch ?? fetch;
  const model = options.model ?? (await firstServedModel(options.baseUrl, fetchFunction));
  const tokenizer = options.tokenizer === undefined ? undefined : await TextTokenizer.load(options.tokenizer);
  const countText = (text: string) =>
    tokenizer === undefined ? Math.max(1, Math.round(text.length / 4)) : tokenizer.encode(text, { addSpecialTokens: false }).length;
  let requests: BenchmarkRequest[];
  if (options.datasetName === 'random') {
    const vocabSize = options.randomVocabSize ?? (tokenizer === undefined ? 32000 : tokenizer.tokenizer.get_vocab(true).size);
    requests = randomDataset({
      numPrompts: options.numPrompts,
      inputLength: options.randomInputLength,
      outputLength: options.randomOutputLength,
      rangeRatio: options.randomRangeRatio,
      prefixLength: options.randomPrefixLength,
      vocabSize,
      excludedTokenIds: tokenizer === undefined ? [] : [...tokenizer.specialTokenIds],
      seed: options.seed,
    });
  } else {
    requests = await jsonlDataset(options.datasetPath!, {
      numPrompts: options.numPrompts,
      defaultOutputLength: options.randomOutputLength,
      countTokens: countText,
    });
  }
  const baseClient = { baseUrl: options.baseUrl, endpoint: options.endpoint, model, ignoreEos: options.ignoreEos, extraBody: options.extraBody, fetch: fetchFunction };
  const countTokens =
    tokenizer === undefined ? undefined : (result: RequestResult) => tokenizer.encode(result.generatedText, { addSpecialTokens: false }).length;

  /** One load of the whole dataset (after a single probe request, as vLLM does: a wrong URL fails in a second). */
  const load = async (client: typeof baseClient) => {
    const probe = await runServeBenchmark({ requests: requests.slice(0, 1), client, requestRate: Infinity, burstiness: 1, maxConcurrency: 1, seed: 0 });
    const probeResult = probe.results[0]!;
    if (!probeResult.success) throw new Error(`the initial test request failed: ${probeResult.error}`);
    const run = await runServeBenchmark({
      requests,
      client,
      requestRate: options.requestRate,
      burstiness: options.burstiness,
      maxConcurrency: options.maxConcurrency,
      seed: options.seed,
      progress: options.disableProgress ? undefined : (io.progress ?? process.stderr),
    });
    const metrics = computeMetrics(run.results, run.durationSeconds, { percentiles: options.metricPercentiles, goodput: options.goodput, countTokens });
    io.log(formatMetricsTable(metrics, run.durationSeconds, options.percentileMetrics, options.maxConcurrency));
    const errors = [...new Set(run.results.filter((result) => !result.success).map((result) => result.error))];
    for (const error of errors.slice(0, 3)) io.log(`failed request: ${error}`);
    return { run, metrics };
  };

  io.log(`pagoda-bench serve: ${requests.length} requests to ${options.baseUrl}${options.endpoint}, model ${model}`);
  io.log(`request rate ${options.requestRate === Infinity ? 'inf' : options.requestRate}/s, burstiness ${options.burstiness}, max concurrency ${options.maxConcurrency ?? 'none'}`);
  let constrained: Record<string, unknown> | undefined;
  if (options.structuredOutput === 'json') io.log('without a schema:');
  const { run, metrics } = await load(baseClient);
  if (options.structuredOutput === 'json') {
    // Order A B B A (without, with, with, without): a load that drifts over the runs weighs on both sides alike.
    const schema = digitsSchema(Math.max(...requests.map((request) => request.expectedOutputLength)));
    const withSchema = [];
    for (let repeat = 0; repeat < 2; repeat += 1) {
      io.log('with structured_outputs.json (every token constrained):');
      withSchema.push(await load({ ...baseClient, extraBody: { ...options.extraBody, structured_outputs: { json: schema } } }));
    }
    io.log('without a schema, again:');
    const again = await load(baseClient);
    const throughput = (loads: Array<{ metrics: BenchmarkMetrics }>) => loads.reduce((sum, entry) => sum + entry.metrics.outputThroughput, 0) / loads.length;
    const free = throughput([{ metrics }, again]);
    const bound = throughput(withSchema);
    const ratio = bound / free;
    io.log(`structured output: ${bound.toFixed(1)} output tok/s with a schema, ${free.toFixed(1)} without (means of two runs each, A B B A): ${ratio.toFixed(3)}x`);
    constrained = {
      schema,
      ratio,
      output_throughput_without: [metrics.outputThroughput, again.metrics.outputThroughput],
      output_throughput_with: withSchema.map((entry) => entry.metrics.outputThroughput),
      ...metricsRecord(withSchema[0]!.metrics, withSchema[0]!.run.durationSeconds, options.percentileMetrics),
    };
  }

  const date = new Date();
  const record: Record<string, unknown> = {
    date: timestamp(date),
    backend: 'openai',
    base_url: options.baseUrl,
    endpoint: options.endpoint,
    model_id: model,
    tokenizer_id: options.tokenizer ?? null,
    dataset_name: options.datasetName,
    num_prompts: requests.length,
    request_rate: options.requestRate,
    burstiness: options.burstiness,
    max_concurrency: options.maxConcurrency ?? null,
    ignore_eos: options.ignoreEos,
    seed: options.seed,
    goodput: options.goodput ?? null,
    machine: machineInfo(),
    ...metricsRecord(metrics, run.durationSeconds, options.percentileMetrics),
    ...(constrained === undefined ? {} : { structured_output: constrained }),
  };
  if (options.saveDetailed) {
    Object.assign(record, {
      input_lens: run.results.map((result) => result.promptLength),
      output_lens: metrics.outputLengths,
      ttfts: run.results.map((result) => result.ttft),
      itls: run.results.map((result) => result.itl),
      generated_texts: run.results.map((result) => result.generatedText),
      errors: run.results.map((result) => result.error),
    });
  }
  let file: string | undefined;
  if (options.saveResult || options.saveDetailed) {
    const rate = options.requestRate === Infinity ? 'inf' : String(options.requestRate);
    const concurrency = options.maxConcurrency === undefined ? '' : `-concurrency${options.maxConcurrency}`;
    const name = options.resultFilename ?? `pagoda-bench-serve-${rate}qps${concurrency}-${basename(model).replace(/[^\w.-]+/g, '_')}-${timestamp(date)}.json`;
    file = join(options.resultDir, name);
    await saveJson(file, record);
    io.log(`saved ${file}`);
  }
  return { metrics, record, file };
}

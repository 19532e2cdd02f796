import { join } from 'node:path';
import { listOption, numberOption, parseOptions, UsageError } from '../cli-args';
import { machineInfo, saveJson, timestamp } from '../results';
import { parseServeArgs, runServeCommand, serveUsage, type ServeCommandOptions } from '../serve/serve-command';
import { chartSvg } from './svg-chart';
import { writeFile } from 'node:fs/promises';

export const sweepUsage = `Usage: pagoda-bench sweep (--request-rates LIST | --max-concurrencies LIST) [serve options]

Runs \`pagoda-bench serve\` once per request rate or per concurrency limit, then draws output throughput against p99
TTFT and p99 ITL as an SVG and saves every point as JSON next to it.

  --request-rates LIST       e.g. 1,2,4,8,inf (requests per second)
  --max-concurrencies LIST   e.g. 1,4,16,64 (the request rate stays --request-rate, default inf)
  --result-dir DIR           where sweep-<time>.json and .svg go (default: the current folder)
  --title TEXT               the chart's title
Every other option is passed to each serve run (see below); --save-result saves each run's JSON too. Point i runs
with --seed + i, so no point reuses another's prompts (they would be prefix-cache hits).

${serveUsage}`;

export interface SweepPoint {
  readonly request_rate: number;
  readonly max_concurrency: number | null;
  readonly completed: number;
  readonly failed: number;
  readonly request_throughput: number;
  readonly output_throughput: number;
  readonly median_ttft_ms: number;
  readonly p99_ttft_ms: number;
  readonly median_itl_ms: number;
  readonly p99_itl_ms: number;
}

/** Splits the sweep's own options from the ones every serve run takes. */
export function parseSweepArgs(argv: readonly string[]): { serve: ServeCommandOptions; rates: number[] | undefined; concurrencies: number[] | undefined; title: string | undefined } {
  const own = new Set(['--request-rates', '--max-concurrencies', '--title']);
  const sweepArgs: string[] = [];
  const serveArgs: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const word = argv[index]!;
    const name = word.split('=')[0]!;
    if (own.has(name)) {
      sweepArgs.push(word);
      if (!word.includes('=') && index + 1 < argv.length) sweepArgs.push(argv[++index]!);
    } else {
      serveArgs.push(word);
    }
  }
  const values = parseOptions(sweepArgs, {
    'request-rates': { type: 'string' },
    'max-concurrencies': { type: 'string' },
    title: { type: 'string' },
  });
  const serve = parseServeArgs(serveArgs);
  if ((values['request-rates'] === undefined) === (values['max-concurrencies'] === undefined)) {
    throw new UsageError('sweep needs exactly one of --request-rates LIST and --max-concurrencies LIST');
  }
  const rates = values['request-rates'] === undefined ? undefined : listOption(values['request-rates']).map((value) => numberOption('request-rates', value, (rate) => rate > 0, 'positive numbers or inf')!);
  const concurrencies =
    values['max-concurrencies'] === undefined
      ? undefined
      : listOption(values['max-concurrencies']).map((value) => numberOption('max-concurrencies', value, (n) => Number.isInteger(n) && n >= 1, 'positive integers')!);
  if ((rates ?? concurrencies)!.length === 0) throw new UsageError('the sweep list is empty');
  // The chart needs p99 TTFT and ITL whatever the table shows.
  if (!serve.metricPercentiles.includes(99)) serve.metricPercentiles.push(99);
  for (const name of ['ttft', 'itl'] as const) if (!serve.percentileMetrics.includes(name)) serve.percentileMetrics.push(name);
  return { serve, rates, concurrencies, title: values.title };
}

export async function runSweep(
  argv: readonly string[],
  io: { log: (line: string) => void; fetch?: typeof fetch; progress?: NodeJS.WriteStream | undefined },
): Promise<{ points: SweepPoint[]; jsonFile: string; svgFile: string }> {
  const { serve, rates, concurrencies, title } = parseSweepArgs(argv);
  const settings = rates !== undefined ? rates.map((rate) => ({ requestRate: rate, maxConcurrency: serve.maxConcurrency })) : concurrencies!.map((limit) => ({ requestRate: serve.requestRate, maxConcurrency: limit as number | undefined }));
  const points: SweepPoint[] = [];
  let model = serve.model;
  for (const [index, setting] of settings.entries()) {
    io.log(`\nsweep: request rate ${setting.requestRate === Infinity ? 'inf' : setting.requestRate}, max concurrency ${setting.maxConcurrency ?? 'none'}`);
    // Each point gets its own prompts (seed + index): with the same prompts, a later point would find every prompt
    // in the server's prefix cache and report the time to first token of a cache hit.
    const { record } = await runServeCommand({ ...serve, ...setting, model, seed: serve.seed + index }, io);
    model = record.model_id as string;
    points.push({
      request_rate: setting.requestRate,
      max_concurrency: setting.maxConcurrency ?? null,
      completed: record.completed as number,
      failed: record.failed as number,
      request_throughput: record.request_throughput as number,
      output_throughput: record.output_throughput as number,
      median_ttft_ms: record.median_ttft_ms as number,
      p99_ttft_ms: record.p99_ttft_ms as number,
      median_itl_ms: record.median_itl_ms as number,
      p99_itl_ms: record.p99_itl_ms as number,
    });
  }
  const byRate = rates !== undefined;
  const label = (point: SweepPoint) => (byRate ? `${point.request_rate === Infinity ? 'inf' : point.request_rate} req/s` : `c=${point.max_concurrency}`);
  const date = new Date();
  const stem = join(serve.resultDir, `sweep-${timestamp(date)}`);
  const svg = chartSvg(
    title ?? `pagoda-bench sweep: ${model} (${byRate ? 'request rate' : 'max concurrency'})`,
    [
      { title: 'p99 TTFT against throughput', xLabel: 'output throughput (tokens/s)', yLabel: 'p99 TTFT (ms)', points: points.map((point) => ({ x: point.output_throughput, y: point.p99_ttft_ms, label: label(point) })) },
      { title: 'p99 ITL against throughput', xLabel: 'output throughput (tokens/s)', yLabel: 'p99 ITL (ms)', points: points.map((point) => ({ x: point.output_throughput, y: point.p99_itl_ms, label: label(point) })) },
    ],
    `${serve.numPrompts} prompts per point, ${serve.datasetName === 'random' ? `random ${serve.randomInputLength} in / ${serve.randomOutputLength} out` : serve.datasetPath!}, ${timestamp(date)}`,
  );
  const jsonFile = `${stem}.json`;
  const svgFile = `${stem}.svg`;
  await saveJson(jsonFile, {
    date: timestamp(date),
    base_url: serve.baseUrl,
    model_id: model,
    swept: byRate ? 'request_rate' : 'max_concurrency',
    num_prompts: serve.numPrompts,
    dataset_name: serve.datasetName,
    random_input_len: serve.randomInputLength,
    random_output_len: serve.randomOutputLength,
    machine: machineInfo(),
    chart: svgFile,
    points,
  });
  await writeFile(svgFile, svg);
  io.log(`\n${'rate'.padStart(8)} ${'conc'.padStart(6)} ${'out tok/s'.padStart(10)} ${'p99 TTFT ms'.padStart(12)} ${'p99 ITL ms'.padStart(11)}`);
  for (const point of points) {
    io.log(
      `${String(point.request_rate === Infinity ? 'inf' : point.request_rate).padStart(8)} ${String(point.max_concurrency ?? '-').padStart(6)} ${point.output_throughput.toFixed(1).padStart(10)} ${point.p99_ttft_ms.toFixed(1).padStart(12)} ${point.p99_itl_ms.toFixed(1).padStart(11)}`,
    );
  }
  io.log(`saved ${jsonFile}\nsaved ${svgFile}`);
  return { points, jsonFile, svgFile };
}

export async function sweepMain(argv: readonly string[]): Promise<void> {
  await runSweep(argv, { log: (line) => console.log(line) });
}

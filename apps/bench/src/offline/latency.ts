import { integerOption, parseOptions } from '../cli-args';
import { ProgressBar } from '../progress-bar';
import { machineInfo, saveJson } from '../results';
import { percentile } from '../statistics';
import { createBenchmarkLlm, engineOptionSpecs, engineOptionsUsage, parseEngineArgs, randomPrompts } from './engine-args';

export const latencyUsage = `Usage: pagoda-bench latency [options]

End-to-end latency of one batch, like \`vllm bench latency\`: the same batch of random token-id prompts is generated
(ignore_eos, temperature 1) --num-iters times after --num-iters-warmup untimed runs. Prints the average and the
10/25/50/75/90/99th percentile latencies; --output-json saves them.

Workload
  --batch-size N          prompts per batch (default 8)
  --input-len N           prompt tokens (default 32)
  --output-len N          tokens generated per prompt (default 128)
  --num-iters-warmup N    untimed runs first (default 2)
  --num-iters N           timed runs (default 10)
  --seed N                seeds the prompts (default 0)
  --output-json FILE      write the result as JSON
  --disable-tqdm          no progress bar (it is drawn only on a terminal anyway)
${engineOptionsUsage}

The batch is the same every iteration, so with prefix caching on (the default, as in vLLM) iterations after the
first find their prompts cached; --no-enable-prefix-caching times the prefill every time.`;

export async function latencyMain(argv: readonly string[]): Promise<void> {
  const values = parseOptions(argv, {
    ...engineOptionSpecs,
    'batch-size': { type: 'string', default: '8' },
    'input-len': { type: 'string', default: '32' },
    'output-len': { type: 'string', default: '128' },
    'num-iters-warmup': { type: 'string', default: '2' },
    'num-iters': { type: 'string', default: '10' },
    seed: { type: 'string', default: '0' },
    'output-json': { type: 'string' },
    'disable-tqdm': { type: 'boolean', default: false },
  });
  const batchSize = integerOption('batch-size', values['batch-size'], 1)!;
  const inputLength = integerOption('input-len', values['input-len'], 1)!;
  const outputLength = integerOption('output-len', values['output-len'], 1)!;
  const warmups = integerOption('num-iters-warmup', values['num-iters-warmup'], 0)!;
  const iterations = integerOption('num-iters', values['num-iters'], 1)!;
  const seed = integerOption('seed', values.seed, 0)!;
  const engine = parseEngineArgs(values);
  const { llm, modelLabel, close } = await createBenchmarkLlm(engine);
  try {
    const prompts = randomPrompts(llm, { numPrompts: batchSize, inputLength, outputLength, seed });
    const params = { temperature: 1, topP: 1, maxTokens: outputLength, ignoreEos: true, seed };
    console.log(`pagoda-bench latency: batch of ${batchSize} × (${inputLength} prompt + ${outputLength} output tokens) on ${modelLabel}`);
    const stream = values['disable-tqdm'] ? undefined : process.stderr;
    const warmupBar = new ProgressBar('warmup    ', warmups, stream);
    for (let index = 0; index < warmups; index++) {
      await llm.generate(prompts, params);
      warmupBar.tick();
    }
    warmupBar.finish();
    const latencies: number[] = [];
    const bar = new ProgressBar('iterations', iterations, stream);
    for (let index = 0; index < iterations; index++) {
      const start = performance.now();
      await llm.generate(prompts, params);
      latencies.push((performance.now() - start) / 1000);
      bar.tick();
    }
    bar.finish();
    const sorted = [...latencies].sort((left, right) => left - right);
    const average = latencies.reduce((sum, latency) => sum + latency, 0) / latencies.length;
    const percentiles = Object.fromEntries([10, 25, 50, 75, 90, 99].map((p) => [String(p), percentile(sorted, p)]));
    console.log(`Avg latency: ${average.toFixed(4)} seconds`);
    for (const [p, value] of Object.entries(percentiles)) console.log(`${p}% percentile latency: ${value.toFixed(4)} seconds`);
    if (values['output-json'] !== undefined) {
      const result = {
        benchmark: 'latency',
        model: modelLabel,
        batch_size: batchSize,
        input_len: inputLength,
        output_len: outputLength,
        num_iters_warmup: warmups,
        num_iters: iterations,
        engine_options: engine.options,
        machine: machineInfo(),
        avg_latency: average,
        latencies,
        percentiles,
      };
      await saveJson(values['output-json'], result);
      console.log(`saved ${values['output-json']}`);
    }
  } finally {
    await close();
  }
}

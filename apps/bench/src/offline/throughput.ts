import { integerOption, parseOptions } from '../cli-args';
import { machineInfo, saveJson } from '../results';
import { createBenchmarkLlm, engineOptionSpecs, engineOptionsUsage, parseEngineArgs, randomPrompts } from './engine-args';

export const throughputUsage = `Usage: pagoda-bench throughput [options]

Offline throughput through the LLM class, like \`vllm bench throughput\`: all requests are given to one
generate() call (random token-id prompts, ignore_eos, temperature 1), timed from submission to the last output.
Prints requests/s and tokens/s; --output-json saves them.

Workload
  --num-prompts N       requests (default 32)
  --input-len N         prompt tokens (default 128)
  --output-len N        tokens generated per request (default 64)
  --seed N              seeds the prompts (default 0)
  --output-json FILE    write the result as JSON
${engineOptionsUsage}`;

export async function throughputMain(argv: readonly string[]): Promise<void> {
  const values = parseOptions(argv, {
    ...engineOptionSpecs,
    'num-prompts': { type: 'string', default: '32' },
    'input-len': { type: 'string', default: '128' },
    'output-len': { type: 'string', default: '64' },
    seed: { type: 'string', default: '0' },
    'output-json': { type: 'string' },
  });
  const numPrompts = integerOption('num-prompts', values['num-prompts'], 1)!;
  const inputLength = integerOption('input-len', values['input-len'], 1)!;
  const outputLength = integerOption('output-len', values['output-len'], 1)!;
  const seed = integerOption('seed', values.seed, 0)!;
  const engine = parseEngineArgs(values);
  const { llm, modelLabel, close } = await createBenchmarkLlm(engine);
  try {
    const prompts = randomPrompts(llm, { numPrompts, inputLength, outputLength, seed });
    console.log(`pagoda-bench throughput: ${numPrompts} requests of ${inputLength} prompt + ${outputLength} output tokens on ${modelLabel}`);
    const start = performance.now();
    const outputs = await llm.generate(prompts, { temperature: 1, topP: 1, maxTokens: outputLength, ignoreEos: true, seed });
    const elapsed = (performance.now() - start) / 1000;
    const promptTokens = outputs.reduce((sum, output) => sum + output.promptTokenIds.length, 0);
    const outputTokens = outputs.reduce((sum, output) => sum + output.outputs[0]!.tokenIds.length, 0);
    const result = {
      benchmark: 'throughput',
      model: modelLabel,
      num_prompts: numPrompts,
      input_len: inputLength,
      output_len: outputLength,
      engine_options: engine.options,
      machine: machineInfo(),
      elapsed_time: elapsed,
      num_requests: numPrompts,
      total_num_tokens: promptTokens + outputTokens,
      total_num_output_tokens: outputTokens,
      requests_per_second: numPrompts / elapsed,
      tokens_per_second: (promptTokens + outputTokens) / elapsed,
      output_tokens_per_second: outputTokens / elapsed,
    };
    console.log(
      `Throughput: ${result.requests_per_second.toFixed(2)} requests/s, ${result.tokens_per_second.toFixed(2)} total tokens/s, ${result.output_tokens_per_second.toFixed(2)} output tokens/s`,
    );
    console.log(`Total num prompt tokens:  ${promptTokens}`);
    console.log(`Total num output tokens:  ${outputTokens}`);
    if (values['output-json'] !== undefined) {
      await saveJson(values['output-json'], result);
      console.log(`saved ${values['output-json']}`);
    }
  } finally {
    await close();
  }
}

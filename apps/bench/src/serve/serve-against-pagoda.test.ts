import { AsyncLLM } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import { createPagodaServer } from '@pagoda/server';
import { describe, expect, it } from 'vitest';
import { parseServeArgs, runServeCommand } from './serve-command';

describe('pagoda-bench serve against the real Pagoda server', () => {
  it('completes every request with exactly the asked output length and reports vLLM’s metrics', async () => {
    const engine = await AsyncLLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '16MiB', maxModelLen: 512, intraOpNumThreads: 1 });
    const server = createPagodaServer({ engine, servedModelName: 'tiny-qwen2', version: 'test' });
    const address = await server.listen(0);
    try {
      const options = parseServeArgs([
        '--base-url', `http://127.0.0.1:${address.port}`,
        '--num-prompts', '16',
        '--random-input-len', '24',
        '--random-output-len', '12',
        '--request-rate', '50',
        '--max-concurrency', '8',
        '--ignore-eos',
        '--seed', '3',
        '--tokenizer', fixturePath('tiny-qwen2'),
      ]);
      const { metrics } = await runServeCommand(options, { log: () => undefined, progress: undefined });
      expect(metrics.completed).toBe(16);
      expect(metrics.failed).toBe(0);
      expect(metrics.totalOutput).toBe(16 * 12);
      expect(metrics.totalInput).toBe(16 * 24);
      expect(metrics.maxConcurrentRequests).toBeLessThanOrEqual(8);
    } finally {
      await server.close();
      await engine.close();
    }
  }, 60_000);

  it('with --structured-output json, runs the load without and with a schema that constrains every token', async () => {
    const engine = await AsyncLLM.create(fixturePath('tiny-qwen2'), {
      kvCacheMemory: '16MiB',
      maxModelLen: 512,
      intraOpNumThreads: 1,
      tokenizerPoolSize: 1,
      structuredOutputsConfig: { disableAnyWhitespace: true },
    });
    const server = createPagodaServer({ engine, servedModelName: 'tiny-qwen2', version: 'test' });
    const address = await server.listen(0);
    const lines: string[] = [];
    try {
      const options = parseServeArgs([
        '--base-url', `http://127.0.0.1:${address.port}`, '--num-prompts', '4', '--random-input-len', '8', '--random-output-len', '10',
        '--ignore-eos', '--structured-output', 'json', '--tokenizer', fixturePath('tiny-qwen2'),
      ]);
      const { metrics, record } = await runServeCommand(options, { log: (line) => lines.push(line), progress: undefined });
      expect(metrics.completed).toBe(4);
      const constrained = record.structured_output as { ratio: number; completed: number; total_output_tokens: number; output_throughput: number };
      expect(constrained).toMatchObject({ completed: 4, total_output_tokens: 40 });
      const mean = (values: number[]) => (values[0]! + values[1]!) / 2;
      const { output_throughput_with: bound, output_throughput_without: free } = record.structured_output as { output_throughput_with: number[]; output_throughput_without: number[] };
      expect(free[0]).toBe(metrics.outputThroughput);
      expect(constrained.ratio).toBeCloseTo(mean(bound) / mean(free), 6);
      expect(lines.join('\n')).toMatch(/structured output: [\d.]+ output tok\/s with a schema, [\d.]+ without \(means of two runs each, A B B A\): [\d.]+x/);
    } finally {
      await server.close();
      await engine.close();
    }
  }, 60_000);
});

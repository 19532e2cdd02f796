import { fixturePath } from '@pagoda/fixtures';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { UsageError } from '../cli-args';
import { parseEngineArgs } from './engine-args';
import { latencyMain } from './latency';
import { throughputMain } from './throughput';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'pagoda-bench-offline-'));
  vi.spyOn(console, 'log').mockImplementation(() => undefined);
});
afterAll(async () => {
  vi.restoreAllMocks();
  await rm(directory, { recursive: true, force: true });
});

const tinyEngine = ['--model', fixturePath('tiny-llama'), '--kv-cache-memory', '64MiB', '--max-model-len', '256'];

describe('parseEngineArgs', () => {
  it('defaults to dummy weights without --model and to the checkpoint with it', () => {
    expect(parseEngineArgs({}).options.loadFormat).toBe('dummy');
    expect(parseEngineArgs({ model: 'x' }).options.loadFormat).toBe('safetensors');
    expect(parseEngineArgs({ 'no-enable-prefix-caching': true, 'max-num-seqs': '4' }).options).toMatchObject({ enablePrefixCaching: false, maxNumSeqs: 4 });
    expect(() => parseEngineArgs({ 'load-format': 'safetensors' })).toThrow(UsageError);
    expect(() => parseEngineArgs({ 'max-num-seqs': '0' })).toThrow(/max-num-seqs/);
  });
});

describe('offline benchmarks on the tiny-llama fixture', () => {
  it('throughput generates every requested token and saves vLLM-keyed JSON', async () => {
    const file = join(directory, 'throughput.json');
    await throughputMain([...tinyEngine, '--num-prompts', '3', '--input-len', '5', '--output-len', '4', '--output-json', file]);
    const saved = JSON.parse(await readFile(file, 'utf8')) as Record<string, number>;
    expect(saved).toMatchObject({ num_requests: 3, total_num_tokens: 27, total_num_output_tokens: 12 });
    expect(saved.requests_per_second).toBeCloseTo(3 / saved.elapsed_time!, 9);
    expect(saved.tokens_per_second).toBeCloseTo(27 / saved.elapsed_time!, 9);
  });

  it('latency times each iteration and reports its percentiles', async () => {
    const file = join(directory, 'latency.json');
    await latencyMain([...tinyEngine, '--batch-size', '2', '--input-len', '4', '--output-len', '3', '--num-iters-warmup', '1', '--num-iters', '3', '--output-json', file, '--disable-tqdm']);
    const saved = JSON.parse(await readFile(file, 'utf8')) as { latencies: number[]; avg_latency: number; percentiles: Record<string, number> };
    expect(saved.latencies).toHaveLength(3);
    expect(saved.avg_latency).toBeCloseTo(saved.latencies.reduce((sum, value) => sum + value, 0) / 3, 12);
    expect(Object.keys(saved.percentiles)).toEqual(['10', '25', '50', '75', '90', '99']);
    expect(saved.percentiles['10']).toBeLessThanOrEqual(saved.percentiles['99']!);
  });
});

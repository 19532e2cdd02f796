import { readFile, mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../cli-args';
import { sendCompletionRequest } from './client';
import { type FakeServer, startFakeCompletionsServer } from './fake-completions-server';
import { parseGoodput, parseServeArgs, runServeCommand } from './serve-command';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'pagoda-bench-serve-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function withServer<T>(options: Parameters<typeof startFakeCompletionsServer>[0], run: (server: FakeServer) => Promise<T>): Promise<T> {
  const server = await startFakeCompletionsServer(options);
  try {
    return await run(server);
  } finally {
    await server.close();
  }
}

const quiet = { log: () => undefined };

describe('sendCompletionRequest', () => {
  it('streams a greedy completion with usage and times the first chunk and each gap after it', async () => {
    await withServer({}, async (server) => {
      const result = await sendCompletionRequest(
        { prompt: [5, 6, 7], promptLength: 3, expectedOutputLength: 4 },
        { baseUrl: server.baseUrl, endpoint: '/v1/completions', model: 'fake-model', ignoreEos: true },
      );
      expect(result).toMatchObject({ success: true, error: '', outputTokens: 4, chunkCount: 4, generatedText: ' t0 t1 t2 t3', promptLength: 3 });
      expect(result.itl).toHaveLength(3);
      expect(result.ttft).toBeGreaterThan(0);
      expect(result.latency).toBeCloseTo(result.ttft + result.itl.reduce((sum, gap) => sum + gap, 0), 9);
      expect(server.bodies[0]).toEqual({
        model: 'fake-model',
        prompt: [5, 6, 7],
        temperature: 0,
        max_tokens: 4,
        stream: true,
        stream_options: { include_usage: true },
        ignore_eos: true,
      });
    });
  });

  it('reports an HTTP error or an unreachable server as a failed request with its reason', async () => {
    await withServer({ failRequests: new Set([0]) }, async (server) => {
      const options = { baseUrl: server.baseUrl, endpoint: '/v1/completions', model: 'fake-model', ignoreEos: false };
      const failed = await sendCompletionRequest({ prompt: 'x', promptLength: 1, expectedOutputLength: 2 }, options);
      expect(failed.success).toBe(false);
      expect(failed.error).toMatch(/HTTP 500.*injected failure/);
      expect(server.bodies[0]).not.toHaveProperty('ignore_eos');
    });
    const unreachable = await sendCompletionRequest(
      { prompt: 'x', promptLength: 1, expectedOutputLength: 2 },
      { baseUrl: 'http://127.0.0.1:1', endpoint: '/v1/completions', model: 'm', ignoreEos: false },
    );
    expect(unreachable.success).toBe(false);
    expect(unreachable.error).not.toBe('');
  });
});

describe('runServeCommand', () => {
  it('sends every request under the concurrency limit, asks /v1/models for the model, and saves vLLM-keyed JSON', async () => {
    await withServer({}, async (server) => {
      const options = parseServeArgs([
        '--base-url', server.baseUrl,
        '--num-prompts', '12',
        '--random-input-len', '8',
        '--random-output-len', '3',
        '--random-vocab-size', '100',
        '--max-concurrency', '3',
        '--ignore-eos',
        '--metric-percentiles', '50,99',
        '--goodput', 'ttft:60000', 'e2el:60000',
        '--save-result',
        '--result-dir', directory,
        '--result-filename', 'serve.json',
      ]);
      const lines: string[] = [];
      const { metrics, file } = await runServeCommand(options, { log: (line) => lines.push(line), progress: undefined });
      // 12 benchmark requests after the one initial test request
      expect(server.bodies).toHaveLength(13);
      expect(server.maxInFlight()).toBeLessThanOrEqual(3);
      expect(metrics.completed).toBe(12);
      expect(metrics.failed).toBe(0);
      expect(metrics.totalInput).toBe(96);
      expect(metrics.totalOutput).toBe(36);
      expect(metrics.maxConcurrentRequests).toBeLessThanOrEqual(3);
      expect(lines.join('\n')).toContain('Serving Benchmark Result');
      expect(file).toBe(join(directory, 'serve.json'));
      const saved = JSON.parse(await readFile(file!, 'utf8')) as Record<string, unknown>;
      expect(saved).toMatchObject({ completed: 12, failed: 0, model_id: 'fake-model', request_rate: 'inf', max_concurrency: 3, total_output_tokens: 36 });
      expect(saved.request_goodput).toBeGreaterThan(0);
      for (const key of ['request_throughput', 'output_throughput', 'total_token_throughput', 'median_ttft_ms', 'p99_ttft_ms', 'p50_itl_ms', 'mean_tpot_ms', 'p99_e2el_ms']) {
        expect(typeof saved[key]).toBe('number');
      }
      expect(saved).not.toHaveProperty('ttfts');
    });
  });

  it('counts failed requests, counts chunks without usage, and saves per-request details when asked', async () => {
    await withServer({ failRequests: new Set([2, 4]), omitUsage: true }, async (server) => {
      const options = parseServeArgs([
        '--base-url', server.baseUrl, '--model', 'fake-model', '--dataset-name', 'random', '--num-prompts', '6',
        '--random-input-len', '4', '--random-output-len', '2', '--request-rate', '2000', '--seed', '1',
        '--save-detailed', '--result-dir', directory, '--result-filename', 'detailed.json',
      ]);
      const { metrics, file } = await runServeCommand(options, quiet);
      expect(metrics.completed).toBe(4);
      expect(metrics.failed).toBe(2);
      expect(metrics.totalOutput).toBe(8);
      const saved = JSON.parse(await readFile(file!, 'utf8')) as { errors: string[]; output_lens: number[]; itls: number[][] };
      // which two fail depends on the order the requests reach the server
      expect(saved.output_lens.map((length) => length === 0)).toEqual(saved.errors.map((error) => error !== ''));
      expect(saved.output_lens.filter((length) => length === 0)).toHaveLength(2);
      expect(saved.itls.filter((gaps) => gaps.length === 1)).toHaveLength(4);
    });
  });

  it('reads prompts from a JSONL file', async () => {
    const dataset = join(directory, 'prompts.jsonl');
    await writeFile(dataset, '{"prompt": "Hello there", "output_len": 2}\n{"prompt": [1, 2, 3]}\n');
    await withServer({}, async (server) => {
      const options = parseServeArgs(['--base-url', server.baseUrl, '--dataset-name', 'jsonl', '--dataset-path', dataset, '--num-prompts', '2', '--random-output-len', '5']);
      const { metrics } = await runServeCommand(options, quiet);
      expect(metrics.completed).toBe(2);
      expect(metrics.totalOutput).toBe(7);
      expect(server.bodies.slice(1).map((body) => body.prompt)).toEqual(['Hello there', [1, 2, 3]]);
    });
  });

  it('stops after the initial test request when the server rejects the model', async () => {
    await withServer({}, async (server) => {
      const options = parseServeArgs(['--base-url', server.baseUrl, '--model', 'other', '--num-prompts', '5', '--random-input-len', '2']);
      await expect(runServeCommand(options, quiet)).rejects.toThrow(/initial test request failed: HTTP 404/);
      expect(server.bodies).toHaveLength(1);
    });
  });
});

describe('parseServeArgs', () => {
  it("has vLLM's defaults", () => {
    expect(parseServeArgs([])).toMatchObject({
      baseUrl: 'http://127.0.0.1:8000',
      numPrompts: 1000,
      randomInputLength: 1024,
      randomOutputLength: 128,
      requestRate: Infinity,
      burstiness: 1,
      maxConcurrency: undefined,
      metricPercentiles: [99],
    });
  });

  it('rejects bad values with the option named', () => {
    expect(() => parseServeArgs(['--request-rate', '0'])).toThrow(UsageError);
    expect(() => parseServeArgs(['--percentile-metrics', 'ttft,foo'])).toThrow(/foo/);
    expect(() => parseServeArgs(['--dataset-name', 'jsonl'])).toThrow(/dataset-path/);
    expect(() => parseServeArgs(['--unknown'])).toThrow(UsageError);
  });

  it('reads goodput SLOs given space- or comma-separated', () => {
    expect(parseServeArgs(['--goodput', 'ttft:200', 'tpot:50', '--seed', '3']).goodput).toEqual({ ttft: 200, tpot: 50 });
    expect(parseGoodput(['e2el:1000,ttft:5'])).toEqual({ e2el: 1000, ttft: 5 });
    expect(() => parseGoodput(['itl:5'])).toThrow(/KEY:MILLISECONDS/);
  });
});

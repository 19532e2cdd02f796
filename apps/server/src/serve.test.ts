import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import packageJson from '../package.json' with { type: 'json' };
import { parseServeArgs } from './args';
import { serve } from './serve';

describe('pagoda serve on the built-in default model', () => {
  it('logs the KV cache plan, answers the openai client, and logs statistics while busy', async () => {
    const lines: string[] = [];
    const running = await serve(parseServeArgs(['--port', '0', '--kv-cache-memory', '8MiB', '--max-model-len', '1024'], {}), '0.0.0-test', (line) => lines.push(line), 50);
    try {
      expect(running.servedModelName).toBe('tiny-qwen2');
      expect(lines.join('\n')).toMatch(/KV cache: \d+ blocks of 16 tokens .*; maximum concurrency for 1024-token requests: \d+\.\d+x/);
      const client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const chat = await client.chat.completions.create({ model: 'tiny-qwen2', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 20, temperature: 0 });
      expect(chat.choices[0]!.message.role).toBe('assistant');
      expect(chat.usage!.completion_tokens).toBeGreaterThan(0);
      await new Promise((resolve) => setTimeout(resolve, 120));
      expect(lines.some((line) => /generation [\d.]+ tok\/s, running \d+, waiting \d+, KV usage [\d.]+%, prefix-cache hit rate/.test(line))).toBe(true);
    } finally {
      await running.stop();
    }
  });

  it.each([
    [['--max-model-len', '999999'], /max_model_len \(999999\) is larger than the model's max_position_embeddings \(32768\)/],
    [['--block-size', '0'], /block_size must be a positive integer/],
    [['--kv-cache-memory', '1KiB'], /max_model_len 32768 needs .* not one block of 4.00 KiB fits; raise --kv-cache-memory/],
    [['--device', 'tpu'], /device must be one of cpu, cuda, webgpu/],
    [['--generation-config', 'maybe'], /generation_config must be one of auto, vllm/],
    [['--tensor-parallel-size', '3'], /tensor_parallel_size \(3\) must divide/],
    [['--pipeline-parallel-size', '3'], /pipeline_parallel_size/],
    [['--device', 'cuda'], /the CUDA execution provider binaries .* are missing: .*ONNXRUNTIME_NODE_INSTALL=cuda12/],
    [['--dtype', 'float16'], /dtype on cpu must be auto or float32, got "float16"/],
    [['--model-runner', 'paged-reference', '--block-size', '24'], /block_size must be a power of two of at least 16 for PagedAttention/],
  ])('refuses %j, naming the option', async (argv, message) => {
    await expect(serve(parseServeArgs(['--port', '0', ...argv], {}), 'test', () => undefined)).rejects.toThrow(message);
  });
});

describe('pagoda serve on the paged reference runner (the GPU graph, on the CPU)', () => {
  it('serves /v1/embeddings with --runner pooling and --pooler-config, and says so in its log', async () => {
    const lines: string[] = [];
    const flags = ['--port', '0', '--kv-cache-memory', '8MiB', '--max-model-len', '512', '--runner', 'pooling', '--pooler-config', '{"pooling_type": "MEAN"}'];
    const running = await serve(parseServeArgs(flags, {}), 'test', (line) => lines.push(line));
    try {
      const client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const response = await client.embeddings.create({ model: 'tiny-qwen2', input: ['Hello', 'World'] });
      expect(response.data.map((entry) => entry.embedding.length)).toEqual([32, 32]);
      expect(Math.hypot(...response.data[0]!.embedding)).toBeCloseTo(1, 5);
      expect(lines.join('\n')).toMatch(/OpenAI-compatible: \/v1\/embeddings, \/v1\/models/);
    } finally {
      await running.stop();
    }
  });

  it('logs the pool self-check and answers the openai client as the CPU runner does', async () => {
    const ask = async (flags: string[]) => {
      const lines: string[] = [];
      const running = await serve(parseServeArgs(['--port', '0', '--kv-cache-memory', '8MiB', '--max-model-len', '512', ...flags], {}), 'test', (line) => lines.push(line));
      try {
        const client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: 'unused', maxRetries: 0 });
        const completion = await client.completions.create({ model: 'tiny-qwen2', prompt: 'The capital of France is', max_tokens: 16, temperature: 0 });
        return { text: completion.choices[0]!.text, log: lines.join('\n') };
      } finally {
        await running.stop();
      }
    };
    const paged = await ask(['--model-runner', 'paged-reference']);
    expect(paged.log).toMatch(/on cpu \(paged reference runner\), float32/);
    expect(paged.log).toMatch(/KV pools on cpu \(float32, .*\) keep their writes between runs/);
    expect(paged.text).toBe((await ask([])).text);
  }, 60_000);
});

describe('pagoda serve with tensor and pipeline parallelism', () => {
  it('answers with tensor-parallel size 2 and pipeline-parallel size 2 exactly as one rank does', async () => {
    const ask = async (flags: string[]) => {
      const running = await serve(parseServeArgs(['--port', '0', '--kv-cache-memory', '8MiB', '--max-model-len', '512', ...flags], {}), 'test', () => undefined);
      try {
        const client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: 'unused', maxRetries: 0 });
        const completion = await client.completions.create({ model: 'tiny-qwen2', prompt: 'The capital of France is', max_tokens: 16, temperature: 0 });
        return completion.choices[0]!.text;
      } finally {
        await running.stop();
      }
    };
    const single = await ask([]);
    expect(await ask(['--tensor-parallel-size', '2', '--pipeline-parallel-size', '2'])).toBe(single);
  }, 60_000);
});

describe('pagoda serve as a process', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const tsx = createRequire(import.meta.url).resolve('tsx');

  /** Starts `pagoda serve` from source; resolves with its URL once it listens. */
  async function start(flags: string[]) {
    const child = spawn(process.execPath, ['--import', tsx, '--conditions=@pagoda/source', join(here, 'cli.ts'), 'serve', '--port', '0', '--kv-cache-memory', '8MiB', '--max-model-len', '1024', '--tokenizer-pool-size', '1', ...flags], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stderr.on('data', (chunk) => (output += chunk));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk;
        const match = /listening on (http:\/\/[^\s"]+)/.exec(output);
        if (match) resolve(match[1]!);
      });
      child.once('exit', (code) => reject(new Error(`pagoda exited early (${code}): ${output}`)));
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, url, exited, output: () => output };
  }

  /** Streams a completion; once its first chunk is in, calls `then`; resolves with the whole text. */
  async function stream(url: string, maxTokens: number, then: () => void): Promise<string> {
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-qwen2', prompt: 'Count', max_tokens: maxTokens, min_tokens: maxTokens, ignore_eos: true, stream: true }),
    });
    const reader = response.body!.getReader();
    await reader.read(); // the stream has started
    then();
    let text = '';
    const decoder = new TextDecoder();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    return text;
  }

  it('drains an in-flight stream on SIGTERM, then exits 0', async () => {
    const server = await start([]);
    const text = await stream(server.url, 60, () => server.child.kill('SIGTERM'));
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(text).not.toMatch(/"error"/);
    expect(await server.exited).toBe(0);
    expect(server.output()).toMatch(/SIGTERM: no longer accepting requests; draining those in flight/);
  }, 60_000);

  it('cuts a stream longer than --timeout-graceful-shutdown with an error event, and exits 3', async () => {
    const server = await start(['--timeout-graceful-shutdown', '0.5']);
    const text = await stream(server.url, 1000, () => server.child.kill('SIGTERM'));
    const events = text.trim().split('\n\n');
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(JSON.parse(events.at(-2)!.slice(6))).toMatchObject({ error: { code: 503, type: 'ServiceUnavailableError' } });
    expect(await server.exited).toBe(3);
    expect(server.output()).toMatch(/the drain deadline passed: 1 requests were cut/);
  }, 60_000);

  it('prints its version', async () => {
    const child = spawn(process.execPath, ['--import', tsx, '--conditions=@pagoda/source', join(here, 'cli.ts'), '--version'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(0);
    expect(output.trim()).toBe(packageJson.version);
  });

  it('refuses to start when --chat-template names a file that does not exist', async () => {
    await expect(serve(parseServeArgs(['--port', '0', '--chat-template', 'no/such/template.jinja'], {}), 'test', () => undefined)).rejects.toThrow(
      /--chat-template "no\/such\/template.jinja" names no readable file/,
    );
  });
});

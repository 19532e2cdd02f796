import { fixturePath, readReference } from '@pagoda/fixtures';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AsyncLLM, EngineDeadError } from './async-llm';
import type { RequestOutput } from './request-output';
import { collect } from './test-streams';

describe('AsyncLLM on tiny-llama', () => {
  const reference = readReference('tiny-llama');
  let engine: AsyncLLM;
  beforeAll(async () => {
    engine = await AsyncLLM.create(fixturePath('tiny-llama'), { kvCacheMemory: '8MiB', maxModelLen: 512, intraOpNumThreads: 1 });
  });
  afterAll(() => engine.close());

  it('streams deltas that add up to the reference greedy text, for concurrent requests', async () => {
    const streams = reference.prompts.map((prompt) =>
      collect(engine.generate({ prompt: prompt.ids, samplingParams: { temperature: 0, maxTokens: 24, ignoreEos: true } })),
    );
    const results = await Promise.all(streams);
    results.forEach((deltas, index) => {
      const expected = reference.prompts[index]!.greedy;
      expect(deltas.map((delta) => delta.outputs[0]!.text).join('')).toBe(expected.text_in_context);
      expect(deltas.flatMap((delta) => delta.outputs[0]!.tokenIds)).toEqual(expected.ids);
      expect(deltas.at(-1)!.finished).toBe(true);
      expect(deltas.at(-1)!.outputs[0]!.finishReason).toBe('length');
      expect(deltas.at(-1)!.metrics!.timeToFirstToken).toBeGreaterThan(0);
    });
  });

  it('aborts a request mid-stream and frees its blocks', async () => {
    const stream = engine.generate({ requestId: 'to-abort', prompt: 'Once upon a time', samplingParams: { maxTokens: 400, ignoreEos: true } });
    const deltas: RequestOutput[] = [];
    for await (const delta of stream) {
      deltas.push(delta);
      if (deltas.length === 3) engine.abort('to-abort');
    }
    expect(deltas.at(-1)!.outputs[0]!.finishReason).toBe('abort');
    expect(deltas.flatMap((delta) => delta.outputs[0]!.tokenIds).length).toBeLessThan(400);
    await waitFor(() => engine.makeStats().numRunningRequests === 0);
    expect(engine.makeStats().kvCacheUsage).toBe(0);
  });

  it('aborts a request whose consumer stops reading', async () => {
    let count = 0;
    for await (const delta of engine.generate({ prompt: 'Hello', samplingParams: { maxTokens: 400, ignoreEos: true } })) {
      count += delta.outputs[0]!.tokenIds.length;
      if (count >= 2) break;
    }
    await waitFor(() => engine.makeStats().numRunningRequests === 0 && engine.makeStats().kvCacheUsage === 0);
  });

  it('refuses invalid requests at once, naming the parameter', () => {
    expect(() => engine.generate({ prompt: 'hi', samplingParams: { temperature: 3 } })).toThrow('temperature must be in [0, 2], got 3');
    expect(() => engine.generate({})).toThrow('a request needs a prompt or messages');
  });
});

describe('AsyncLLM keeps the caller’s event loop free', () => {
  let engine: AsyncLLM;
  let modelDir: string;
  beforeAll(async () => {
    // A dummy model big enough that one prefill step takes seconds, with tiny-llama's tokenizer.
    modelDir = await mkdtemp(join(tmpdir(), 'pagoda-slow-model-'));
    const config = JSON.parse(await import('node:fs/promises').then((fs) => fs.readFile(fixturePath('tiny-llama', 'config.json'), 'utf8')));
    Object.assign(config, { hidden_size: 384, intermediate_size: 1536, num_hidden_layers: 6, num_attention_heads: 6, num_key_value_heads: 2, max_position_embeddings: 8192 });
    await writeFile(join(modelDir, 'config.json'), JSON.stringify(config));
    for (const file of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(fixturePath('tiny-llama', file), join(modelDir, file));
    engine = await AsyncLLM.create(modelDir, {
      loadFormat: 'dummy',
      kvCacheMemory: '256MiB',
      maxModelLen: 4096,
      maxNumBatchedTokens: 4096,
      intraOpNumThreads: 1,
    });
  }, 60_000);
  afterAll(async () => {
    await engine?.close();
    if (modelDir !== undefined) await rm(modelDir, { recursive: true, force: true });
  });

  it('never lets a 10 ms interval gap more than 100 ms during a model run of several seconds', async () => {
    const gaps: number[] = [];
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      gaps.push(now - last);
      last = now;
    }, 10);
    const started = performance.now();
    const prompt = Array.from({ length: 3500 }, (_, index) => 100 + (index % 20_000));
    await collect(engine.generate({ prompt, samplingParams: { temperature: 0, maxTokens: 4, ignoreEos: true } }));
    const elapsed = performance.now() - started;
    clearInterval(timer);
    expect(elapsed).toBeGreaterThan(1000);
    expect(Math.max(...gaps)).toBeLessThan(100);
  }, 60_000);
});

describe('AsyncLLM when the engine core dies', () => {
  it('fails every waiting caller with EngineDeadError and reports itself dead, never hanging', async () => {
    const engine = await AsyncLLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '4MiB', maxModelLen: 512, intraOpNumThreads: 1 });
    const streams = [0, 1].map((index) =>
      collect(engine.generate({ prompt: `request ${index}`, samplingParams: { maxTokens: 400, ignoreEos: true } })),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The core's loop throws before its next step and its thread exits, as a real crash would.
    (engine as unknown as { worker: { postMessage(message: unknown): void } }).worker.postMessage({ type: 'inject-fault', message: 'injected fault' });
    for (const stream of streams) await expect(stream).rejects.toBeInstanceOf(EngineDeadError);
    await expect(streams[0]).rejects.toThrow('the engine core failed: injected fault');
    expect(engine.health()).toBe('dead');
    expect(() => engine.generate({ prompt: 'again' })).toThrow(EngineDeadError);
    await engine.close();
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A timing assertion, so this file runs alone (vitest.alone.config.ts): nothing else shares the machine. */
import { fixturePath } from '@pagoda/fixtures';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AsyncLLM } from './async-llm';
import { collect } from './test-streams';

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


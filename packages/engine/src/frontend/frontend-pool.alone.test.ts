/** Timings (the event loop stays free, budgets stop tasks in time): this file runs alone (vitest.alone.config.ts). */
import { fixturePath, readFixtureJson } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PagodaEngineError } from '../errors';
import { FrontendBudgetError, FrontendPool } from './frontend-pool';
import { TextTokenizer } from './text-tokenizer';

/** The two hostile request templates of the hardening issue: one builds lists of 2^25 items, one loops 3M times. */
const memoryBombTemplate =
  '{% set ns = namespace(a=[1], keep=[]) %}{% for i in range(25) %}{% set ns.a = ns.a + ns.a %}{% endfor %}' +
  '{% for j in range(24) %}{% set ns.keep = ns.keep + [ns.a + [j]] %}{% endfor %}{{ ns.keep | length }}';
const stallTemplate = '{% for i in range(3000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}hi';

interface TokenizerFixture {
  cases: Array<{ text: string; ids_with_special: number[] }>;
  chat: Array<{ messages: Array<{ role: string; content: string }>; kwargs: Record<string, unknown>; prompt: string; ids: number[] }>;
}

describe('FrontendPool', () => {
  const fixture = readFixtureJson<TokenizerFixture>('tokenizers', 'qwen3.json');
  let pool: FrontendPool;
  beforeAll(async () => {
    pool = await FrontendPool.create(fixturePath('tiny-qwen2'), { size: 1, taskTimeoutMs: 5000, maxHeapMb: 256 });
  }, 60_000);
  afterAll(() => pool?.close());

  it('tokenizes and renders exactly as the tokenizer does on this thread', async () => {
    for (const testCase of fixture.cases) expect(await pool.encode(testCase.text)).toEqual(testCase.ids_with_special);
    for (const chat of fixture.chat) {
      const rendered = await pool.render(chat.messages, { templateKwargs: chat.kwargs }, { maxOutputBytes: 1 << 20, encode: { addSpecialTokens: false } });
      expect(rendered).toEqual({ text: chat.prompt, tokenIds: chat.ids });
    }
  });

  it('stops a template that loops past the time budget, keeping the event loop free, and serves on', async () => {
    let longestGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
    }, 5);
    const started = performance.now();
    const error = await pool.render([{ role: 'user', content: 'x' }], { chatTemplate: stallTemplate }, { maxOutputBytes: 1 << 20 }).catch((caught: unknown) => caught);
    clearInterval(timer);
    expect(error).toBeInstanceOf(FrontendBudgetError);
    expect(error).toMatchObject({ budget: 'time', task: 'render' });
    expect(performance.now() - started).toBeLessThan(8000);
    expect(longestGap).toBeLessThan(250);
    expect(await pool.encode('Hello world')).toEqual([9707, 1879]);
  });

  it('ends a template that outgrows its worker’s heap, and serves on', async () => {
    const error = await pool.render([{ role: 'user', content: 'x' }], { chatTemplate: memoryBombTemplate }, { maxOutputBytes: 1 << 20 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FrontendBudgetError);
    expect((error as FrontendBudgetError).budget).toMatch(/^(memory|time)$/);
    expect(await pool.encode('Hello world')).toEqual([9707, 1879]);
  }, 30_000);

  it('refuses a rendering over the output budget without returning it', async () => {
    const error = await pool.render([{ role: 'user', content: 'y'.repeat(5000) }], {}, { maxOutputBytes: 1000 }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ budget: 'output', bytes: expect.any(Number) });
    expect((error as FrontendBudgetError).bytes).toBeGreaterThan(5000);
  });

  it('reports a template that fails as a chat_template_error', async () => {
    const error = await pool.render([{ role: 'user', content: 'x' }], { chatTemplate: '{{ raise_exception("no") }}' }, { maxOutputBytes: 1000 }).catch((caught: unknown) => caught);
    expect(PagodaEngineError.isInstance(error) && error.code).toBe('chat_template_error');
    const syntax = await pool.render([{ role: 'user', content: 'x' }], { chatTemplate: '{% for %}' }, { maxOutputBytes: 1000 }).catch((caught: unknown) => caught);
    expect(PagodaEngineError.isInstance(syntax) && syntax.code).toBe('chat_template_error');
  });

  it('stops a task when its caller aborts', async () => {
    const controller = new AbortController();
    const rendering = pool.render([{ role: 'user', content: 'x' }], { chatTemplate: stallTemplate }, { maxOutputBytes: 1 << 20, signal: controller.signal });
    setTimeout(() => controller.abort(new Error('client went away')), 50);
    const started = performance.now();
    await expect(rendering).rejects.toThrow('client went away');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(await pool.encode('Hello world')).toEqual([9707, 1879]);
  });
});

describe('TextTokenizer prompt bound', () => {
  it('knows the most input bytes one token can stand for', async () => {
    // Qwen's longest token is 128 bytes; its NFC normalizer may compose up to three code points into one.
    expect((await TextTokenizer.load(fixturePath('tiny-qwen2'))).maxInputBytesPerToken).toBe(3 * 128);
    const llama = await TextTokenizer.load(fixturePath('tiny-llama'));
    expect(llama.maxInputBytesPerToken).toBeGreaterThanOrEqual(16);
    expect(Number.isFinite(llama.maxInputBytesPerToken)).toBe(true);
  });
});

/**
 * One test per way a single request used to crash or stall the whole server (the hardening issue's vectors). Each
 * asserts the answer's status, that the server still serves, and how long `/health` took while the attack ran:
 * timings, so this file runs alone (vitest.alone.config.ts).
 */
import { AsyncLLM } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPagodaServer, type ErrorBody, type PagodaServer } from './index';

const model = 'tiny-qwen2';
const memoryBombTemplate =
  '{% set ns = namespace(a=[1], keep=[]) %}{% for i in range(25) %}{% set ns.a = ns.a + ns.a %}{% endfor %}' +
  '{% for j in range(24) %}{% set ns.keep = ns.keep + [ns.a + [j]] %}{% endfor %}{{ ns.keep | length }}';
const stallTemplate = '{% for i in range(3000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}hi';
const taskTimeoutMs = 3000;

let engine: AsyncLLM;
let server: PagodaServer;
let baseUrl: string;

beforeAll(async () => {
  // One tokenizer worker, so an attack holds all of the pool; a 32k context, so the prompt bound is 12 MiB.
  engine = await AsyncLLM.create(fixturePath(model), {
    kvCacheMemory: '16MiB',
    maxModelLen: 32_768,
    intraOpNumThreads: 1,
    tokenizerPoolSize: 1,
    tokenizerPoolTimeoutMs: taskTimeoutMs,
  });
  server = createPagodaServer({ engine, servedModelName: model, version: 'test', trustRequestChatTemplate: true, maxWaitingRequests: 8 });
  baseUrl = `http://127.0.0.1:${(await server.listen(0)).port}`;
});

afterAll(async () => {
  await server?.close();
  await engine?.close();
});

async function post(path: string, body: unknown) {
  const started = performance.now();
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as ErrorBody, ms: performance.now() - started, headers: response.headers };
}

/** RSS of this process (the server and the engine's frontend) and of its tokenizer workers, in bytes. */
function serverRss(): number {
  const workers = engine.tokenizerPool.workerPids.map((pid) => {
    try {
      return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
    } catch {
      return 0; // a worker that was just replaced
    }
  });
  return process.memoryUsage().rss + workers.reduce((sum, bytes) => sum + bytes, 0);
}

/**
 * Runs `attack` while polling /health every 25 ms; resolves with the attack's result, the slowest /health and the
 * highest RSS (server and tokenizer workers) seen at the probes, in MiB.
 */
async function whileProbing<T>(attack: () => Promise<T>): Promise<{ result: T; slowestHealthMs: number; probes: number; peakRssMiB: string }> {
  let running = true;
  let slowestHealthMs = 0;
  let probes = 0;
  let peakRss = serverRss();
  const probing = (async () => {
    while (running) {
      peakRss = Math.max(peakRss, serverRss());
      const started = performance.now();
      const response = await fetch(`${baseUrl}/health`);
      expect(response.status).toBe(200);
      slowestHealthMs = Math.max(slowestHealthMs, performance.now() - started);
      probes += 1;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();
  try {
    const result = await attack();
    return { result, slowestHealthMs, probes, peakRssMiB: (peakRss / 2 ** 20).toFixed(0) };
  } finally {
    running = false;
    await probing;
  }
}

async function expectServing() {
  const response = await post('/v1/completions', { model, prompt: 'Still there?', max_tokens: 2, temperature: 0 });
  expect(response.status).toBe(200);
}

describe('request chat templates', () => {
  it('refuses a request template without --trust-request-chat-template, naming chat_template', async () => {
    const strict = createPagodaServer({ engine, servedModelName: model, version: 'test' });
    const url = `http://127.0.0.1:${(await strict.listen(0)).port}`;
    try {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }], chat_template: memoryBombTemplate }),
      });
      expect(response.status).toBe(400);
      const { error } = (await response.json()) as ErrorBody;
      expect(error.param).toBe('chat_template');
      expect(error.message).toMatch(/--trust-request-chat-template/);
    } finally {
      await strict.close();
    }
  });

  it('answers the memory bomb with a 400 naming chat_template, and keeps serving', async () => {
    const { result, slowestHealthMs, probes, peakRssMiB } = await whileProbing(() =>
      post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], chat_template: memoryBombTemplate, max_tokens: 1 }),
    );
    console.log(`memory bomb: ${result.status} in ${result.ms.toFixed(0)} ms; slowest of ${probes} /health: ${slowestHealthMs.toFixed(1)} ms; peak RSS ${peakRssMiB} MiB`);
    expect(result.status).toBe(400);
    expect(result.body.error.param).toBe('chat_template');
    expect(result.body.error.message).toMatch(/memory|longer than/);
    expect(slowestHealthMs).toBeLessThan(1000);
    await expectServing();
  });

  it('stops the stall template at its time budget while /health answers and a live stream keeps flowing', async () => {
    const streamGaps: number[] = [];
    const controller = new AbortController();
    const streaming = (async () => {
      const response = await fetch(`${baseUrl}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, prompt: 'Tell a long story', max_tokens: 30_000, ignore_eos: true, stream: true }),
        signal: controller.signal,
      });
      const reader = response.body!.getReader();
      let last = performance.now();
      try {
        while (true) {
          const { done } = await reader.read();
          if (done) break;
          const now = performance.now();
          streamGaps.push(now - last);
          last = now;
        }
      } catch {
        // aborted below, once the attack is over
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { result, slowestHealthMs, probes, peakRssMiB } = await whileProbing(() =>
      post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], chat_template: stallTemplate, max_tokens: 1 }),
    );
    controller.abort();
    await streaming;
    const slowestGap = Math.max(...streamGaps.slice(1));
    console.log(
      `stall template: ${result.status} in ${result.ms.toFixed(0)} ms; slowest of ${probes} /health: ${slowestHealthMs.toFixed(1)} ms; ` +
        `slowest gap of ${streamGaps.length} stream chunks: ${slowestGap.toFixed(1)} ms; peak RSS ${peakRssMiB} MiB`,
    );
    expect(result.status).toBe(400);
    expect(result.body.error.param).toBe('chat_template');
    expect(result.body.error.message).toMatch(/longer than 3000 ms/);
    expect(result.ms).toBeLessThan(taskTimeoutMs + 2000);
    expect(slowestHealthMs).toBeLessThan(1000);
    expect(streamGaps.length).toBeGreaterThan(20);
    expect(slowestGap).toBeLessThan(1000);
    await expectServing();
  });

  it('holds memory flat over 1,000 distinct request templates (the template cache is bounded)', async () => {
    const rss = serverRss;
    const render = (index: number) =>
      post('/tokenize', { model, messages: [{ role: 'user', content: 'x' }], chat_template: `{{ messages[0].content }} template ${index} {{ ${index} + 1 }}` });
    const settle = async () => {
      global.gc!();
      await engine.tokenizerPool.collectGarbage();
      await new Promise((resolve) => setTimeout(resolve, 200));
    };
    for (let index = 0; index < 100; index += 1) expect((await render(-index)).status).toBe(200); // warm the pool and the cache
    await settle();
    const before = rss();
    for (let index = 0; index < 1000; index += 1) expect((await render(index)).status).toBe(200);
    await settle();
    const growth = rss() - before;
    console.log(`1,000 request templates: RSS (server and its tokenizer worker) grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);
    expect(growth).toBeLessThan(20 * 2 ** 20);
  });
});

describe('long prompts are bounded before and while they are tokenized', () => {
  it('refuses a 15 MiB single word on /tokenize at once, by its size', async () => {
    const { result, slowestHealthMs, peakRssMiB } = await whileProbing(() => post('/tokenize', { model, prompt: 'a'.repeat(15 * 2 ** 20) }));
    console.log(`15 MiB word on /tokenize: ${result.status} in ${result.ms.toFixed(0)} ms; slowest /health ${slowestHealthMs.toFixed(1)} ms; peak RSS ${peakRssMiB} MiB`);
    expect(result.status).toBe(400);
    expect(result.body.error.param).toBe('prompt');
    expect(result.body.error.message).toMatch(/maximum context length is 32768 tokens\. However, your prompt comes to at least \d+ tokens/);
    expect(result.ms).toBeLessThan(1000);
    expect(slowestHealthMs).toBeLessThan(1000);
  });

  it('answers a 16 MiB body with 413 and a 15 MiB prompt on /v1/completions with 400, both at once', async () => {
    const over = await post('/v1/completions', JSON.stringify({ model, prompt: 'b'.repeat(16 * 2 ** 20) }));
    expect(over.status).toBe(413);
    const under = await post('/v1/completions', { model, prompt: 'b '.repeat(7.5 * 2 ** 20) });
    console.log(`16 MiB body: ${over.status} in ${over.ms.toFixed(0)} ms; 15 MiB prompt: ${under.status} in ${under.ms.toFixed(0)} ms`);
    expect(under.status).toBe(400);
    expect(under.body.error.param).toBe('prompt');
    expect(under.ms).toBeLessThan(1000);
    await expectServing();
  });

  it('stops tokenizing a 4 MiB single word (under the size bound) at the time budget, /health answering meanwhile', async () => {
    const { result, slowestHealthMs, probes, peakRssMiB } = await whileProbing(() => post('/tokenize', { model, prompt: 'c'.repeat(4 * 2 ** 20) }));
    console.log(`4 MiB word on /tokenize: ${result.status} in ${result.ms.toFixed(0)} ms; slowest of ${probes} /health: ${slowestHealthMs.toFixed(1)} ms; peak RSS ${peakRssMiB} MiB`);
    expect(result.status).toBe(400);
    expect(result.body.error.param).toBe('prompt');
    expect(result.body.error.message).toMatch(/tokenizing the prompt took longer than 3000 ms/);
    expect(slowestHealthMs).toBeLessThan(1000);
    await expectServing();
  });

  it('answers a 10 MiB prompt of words with 400 within the time budget, /health answering meanwhile', async () => {
    const { result, slowestHealthMs, peakRssMiB } = await whileProbing(() => post('/v1/completions', { model, prompt: 'word '.repeat(2 * 2 ** 20), max_tokens: 1 }));
    console.log(`10 MiB prompt: ${result.status} in ${result.ms.toFixed(0)} ms; slowest /health ${slowestHealthMs.toFixed(1)} ms; peak RSS ${peakRssMiB} MiB`);
    expect(result.status).toBe(400);
    expect(result.body.error.param).toBe('prompt');
    expect(result.ms).toBeLessThan(taskTimeoutMs + 2000);
    expect(slowestHealthMs).toBeLessThan(1000);
    await expectServing();
  });
});

describe('n and the waiting limit', () => {
  it('refuses n = 16000 at once, and counts sequences, not requests, against --max-waiting-requests', async () => {
    const huge = await post('/v1/completions', { model, prompt: 'x', n: 16_000, temperature: 1 });
    expect(huge.status).toBe(400);
    expect(huge.body.error.param).toBe('n');
    expect(huge.ms).toBeLessThan(1000);
    const wide = await post('/v1/completions', { model, prompt: 'x', n: 64, temperature: 1, max_tokens: 1 });
    expect(wide.status).toBe(429);
    expect(wide.headers.get('retry-after')).toBe('1');
    expect(wide.body.error.message).toMatch(/this request adds 64 \(limit 8\)/);
    expect((await post('/v1/completions', { model, prompt: 'x', n: 8, temperature: 1, max_tokens: 1 })).status).toBe(200);
  });
});

describe('connections', () => {
  it('closes 1,000 idle and half-sent connections at the header and request timeouts, serving meanwhile', async () => {
    const guarded = createPagodaServer({ engine, servedModelName: model, version: 'test', headersTimeoutMs: 2000, requestTimeoutMs: 3000 });
    const { port } = await guarded.listen(0);
    const sockets: Socket[] = [];
    const closedAt: number[] = [];
    const opened = performance.now();
    try {
      for (let index = 0; index < 1000; index += 1) {
        const socket = connect(port, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.on('close', () => closedAt.push(performance.now() - opened));
        socket.resume(); // read what the server sends (its 408), so its closing is seen
        socket.on('connect', () => {
          if (index % 3 === 1) socket.write('POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // headers never finished
          if (index % 3 === 2) socket.write('POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"prompt": '); // body never finished
        });
        sockets.push(socket);
      }
      const { slowestHealthMs } = await whileProbing(async () => {
        const response = await fetch(`http://127.0.0.1:${port}/health`);
        expect(response.status).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 5000));
      });
      const open = sockets.filter((socket) => !socket.destroyed && socket.readyState !== 'closed').length;
      console.log(`1,000 idle or half-sent connections: ${open} open after 5 s (last closed at ${Math.max(...closedAt).toFixed(0)} ms); slowest /health ${slowestHealthMs.toFixed(1)} ms`);
      expect(open).toBe(0);
      expect(slowestHealthMs).toBeLessThan(1000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await guarded.close();
    }
  }, 60_000);

  it('refuses connections past the cap', async () => {
    const capped = createPagodaServer({ engine, servedModelName: model, version: 'test', maxConnections: 20 });
    const { port } = await capped.listen(0);
    const sockets: Socket[] = [];
    try {
      for (let index = 0; index < 20; index += 1) {
        const socket = connect(port, '127.0.0.1');
        socket.on('error', () => undefined);
        sockets.push(socket);
        await new Promise((resolve) => socket.once('connect', resolve));
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    } finally {
      for (const socket of sockets) socket.destroy();
      await capped.close();
    }
  });
});

import { AsyncLLM } from '@pagoda/engine';
import { decodeFloat32Base64, fixturePath, readFixtureJson } from '@pagoda/fixtures';
import { request as httpRequest } from 'node:http';
import OpenAI from 'openai';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPagodaServer, type ErrorBody, type PagodaServer } from './index';

interface Reference {
  prompts: Array<{ ids: number[]; greedy: { ids: number[]; text_in_context: string } }>;
}

const model = 'tiny-qwen2';
const reference = readFixtureJson<Reference>(model, 'reference.json');
let engine: AsyncLLM;
let server: PagodaServer;
let baseUrl: string;
let client: OpenAI;

beforeAll(async () => {
  engine = await AsyncLLM.create(fixturePath(model), { kvCacheMemory: '16MiB', maxModelLen: 512, intraOpNumThreads: 1 });
  server = createPagodaServer({ engine, servedModelName: model, version: '1.2.3', maxWaitingRequests: 1000 });
  const address = await server.listen(0);
  baseUrl = `http://127.0.0.1:${address.port}`;
  client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await engine?.close();
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> & ErrorBody };
}

const greedy = { temperature: 0, max_tokens: 24, ignore_eos: true };

describe('completions', () => {
  it('returns the reference greedy text for a token-id prompt, with usage', async () => {
    const prompt = reference.prompts[0]!;
    const completion = await client.completions.create({ model, prompt: prompt.ids, ...greedy } as never);
    expect(completion.choices[0]!.text).toBe(prompt.greedy.text_in_context);
    expect(completion.choices[0]!.finish_reason).toBe('length');
    expect(completion.usage).toEqual({ prompt_tokens: prompt.ids.length, completion_tokens: 24, total_tokens: prompt.ids.length + 24 });
  });

  it('streams deltas that concatenate to the non-streamed text, then usage and [DONE]', async () => {
    const prompts = reference.prompts.map((prompt) => prompt.ids);
    const whole = await client.completions.create({ model, prompt: prompts, ...greedy } as never);
    const stream = await client.completions.create({ model, prompt: prompts, ...greedy, stream: true, stream_options: { include_usage: true } } as never);
    const texts = ['', '', ''];
    let usage: unknown;
    for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completion>) {
      for (const choice of chunk.choices) texts[choice.index] += choice.text;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(texts).toEqual(whole.choices.map((choice) => choice.text));
    expect(texts).toEqual(reference.prompts.map((prompt) => prompt.greedy.text_in_context));
    expect(usage).toEqual(whole.usage);
  });

  it('gives n samples per prompt with legacy logprobs, and echoes the prompt with its tokens scored', async () => {
    const completion = await client.completions.create({ model, prompt: 'Hello', n: 2, max_tokens: 4, temperature: 1, seed: 1, logprobs: 2, echo: true } as never);
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1]);
    for (const choice of completion.choices) {
      expect(choice.text.startsWith('Hello')).toBe(true);
      // The prompt's one token (unscored: it has nothing before it), then the 4 generated.
      expect(choice.logprobs!.tokens).toHaveLength(5);
      expect(choice.logprobs!.token_logprobs![0]).toBeNull();
      expect(choice.logprobs!.token_logprobs!.slice(1).every((logprob) => typeof logprob === 'number')).toBe(true);
      expect(choice.logprobs!.top_logprobs![0]).toBeNull();
      expect(Object.keys(choice.logprobs!.top_logprobs![1]!).length).toBeLessThanOrEqual(2);
      expect(choice.logprobs!.text_offset![0]).toBe(0);
      expect(choice.logprobs!.text_offset![1]).toBe('Hello'.length);
    }
  });

  it('lets a request without max_tokens generate up to max_model_len minus its prompt', async () => {
    const { status, body } = await post('/v1/completions', { model, prompt: [1, 2, 3], min_tokens: 509, ignore_eos: true, temperature: 0 });
    expect(status).toBe(200);
    expect((body as unknown as OpenAI.Completion).usage!.completion_tokens).toBe(509);
  });
});

describe('chat completions', () => {
  it('answers like the engine, streamed and not, with correct usage', async () => {
    const messages = [{ role: 'user' as const, content: 'What is paged attention?' }];
    const whole = await client.chat.completions.create({ model, messages, ...greedy } as never);
    const engineText = await (async () => {
      let text = '';
      for await (const delta of engine.generate({ messages, samplingParams: { temperature: 0, maxTokens: 24, ignoreEos: true } })) text += delta.outputs[0]!.text;
      return text;
    })();
    expect(whole.choices[0]!.message.content).toBe(engineText);
    expect(whole.usage!.prompt_tokens).toBe(14); // the qwen3 chat fixture renders this conversation to 14 ids
    const stream = await client.chat.completions.create({ model, messages, ...greedy, stream: true, stream_options: { include_usage: true } } as never);
    let content = '';
    let role: string | undefined;
    let finish: string | null = null;
    let usage: unknown;
    for await (const chunk of stream as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>) {
      for (const choice of chunk.choices) {
        role ??= choice.delta.role;
        content += choice.delta.content ?? '';
        finish = choice.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(role).toBe('assistant');
    expect(content).toBe(engineText);
    expect(finish).toBe('length');
    expect(usage).toEqual(whole.usage);
  });

  it('returns chat logprobs with top alternatives', async () => {
    const completion = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = completion.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(3);
    expect(content[0]!.top_logprobs).toHaveLength(2);
    expect(content[0]!.logprob).toBe(content[0]!.top_logprobs[0]!.logprob);
  });

  it('passes chat_template_kwargs to the template (enable_thinking)', async () => {
    const body = { model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 };
    const on = await post('/v1/chat/completions', { ...body, chat_template_kwargs: { enable_thinking: true } });
    const off = await post('/v1/chat/completions', { ...body, chat_template_kwargs: { enable_thinking: false } });
    const usage = (response: { body: Record<string, unknown> }) => (response.body.usage as { prompt_tokens: number }).prompt_tokens;
    expect(usage(off)).toBeGreaterThan(usage(on)); // enable_thinking false adds an empty think block
  });
});

describe('validation: status, param and message', () => {
  const cases: Array<[string, Record<string, unknown> | string, number, string | null, RegExp]> = [
    ['temperature', { temperature: 3 }, 400, 'temperature', /temperature must be in \[0, 2\], got 3/],
    ['top_p', { top_p: 1.5 }, 400, 'top_p', /top_p must be in \(0, 1\], got 1.5/],
    ['top_k', { top_k: -2 }, 400, 'top_k', /top_k must be/],
    ['min_p', { min_p: 2 }, 400, 'min_p', /min_p must be in \[0, 1\]/],
    ['repetition_penalty', { repetition_penalty: 0 }, 400, 'repetition_penalty', /repetition_penalty must be > 0/],
    ['presence_penalty', { presence_penalty: 3 }, 400, 'presence_penalty', /presence_penalty must be in \[-2, 2\]/],
    ['frequency_penalty', { frequency_penalty: -3 }, 400, 'frequency_penalty', /frequency_penalty must be in \[-2, 2\]/],
    ['max_tokens', { max_tokens: 0 }, 400, 'max_tokens', /max_tokens must be at least 1, got 0 \(0 only with echo/],
    ['min_tokens', { max_tokens: 2, min_tokens: 5 }, 400, 'min_tokens', /min_tokens must be/],
    ['n when greedy', { n: 2, temperature: 0 }, 400, 'n', /n must be 1 when sampling greedily/],
    ['n', { n: 0 }, 400, 'n', /n must be an integer in \[1, 128\], got 0/],
    ['logprobs', { logprobs: 50 }, 400, 'logprobs', /logprobs must be an integer in \[0, 20\]/],
    ['logit_bias', { logit_bias: { '999999': 5 } }, 400, 'logit_bias', /logit_bias/],
    ['stop', { stop: [''] }, 400, 'stop', /stop/],
    ['context length', { max_tokens: 600 }, 400, 'max_tokens', /maximum context length is 512 tokens/],
    ['a wrong type', { temperature: 'hot' }, 400, 'temperature', /temperature must be a number, got "hot"/],
    ['a number past a double', '{"model": "tiny-qwen2", "prompt": "Hello", "temperature": 1e400}', 400, 'temperature', /temperature must be a number, got Infinity, a number out of range/],
    ['n past 128', { n: 129, temperature: 1 }, 400, 'n', /n must be an integer in \[1, 128\], got 129/],
    ['an unknown model', { model: 'gpt-9' }, 404, 'model', /The model `gpt-9` does not exist/],
    ['a bad prompt', { prompt: { text: 'x' } }, 400, 'prompt', /prompt must be/],
  ];
  it.each(cases)('%s', async (_name, fields, status, param, message) => {
    const response = await post('/v1/completions', typeof fields === 'string' ? fields : { model, prompt: 'Hello', ...fields });
    expect(response.status).toBe(status);
    expect(response.body.error.param).toBe(param);
    expect(response.body.error.message).toMatch(message);
    expect(response.body.error.code).toBe(status);
  });

  it('names top_logprobs for chat and refuses it without logprobs', async () => {
    const response = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 });
    expect(response.status).toBe(400);
    expect(response.body.error.param).toBe('top_logprobs');
  });

  it('refuses malformed JSON and a non-object body with 400, an oversized body with 413, and keeps serving', async () => {
    expect((await post('/v1/completions', '{"model": ')).status).toBe(400);
    const array = await post('/v1/completions', '[1, 2]');
    expect(array.status).toBe(400);
    expect(array.body.error.message).toMatch(/the request body must be an object, got an array/);
    const huge = JSON.stringify({ model, prompt: 'x'.repeat(17 * 2 ** 20) });
    const response = await post('/v1/completions', huge);
    expect(response.status).toBe(413);
    expect(response.body.error).toMatchObject({ type: 'RequestTooLargeError', code: 413 });
    expect(response.body.error.message).toMatch(/over the limit of 16777216 bytes/);
    expect((await fetch(`${baseUrl}/health`)).status).toBe(200);
  });

  it('names max_completion_tokens when the client sent it', async () => {
    const response = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 0 });
    expect(response.status).toBe(400);
    expect(response.body.error.param).toBe('max_completion_tokens');
    expect(response.body.error.message).toMatch(/^max_completion_tokens must be at least 1, got 0/);
    const tooLong = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 600 });
    expect(tooLong.body.error.param).toBe('max_completion_tokens');
  });

  it('refuses empty messages and non-text content parts', async () => {
    expect((await post('/v1/chat/completions', { model, messages: [] })).body.error.param).toBe('messages');
    const image = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] });
    expect(image.status).toBe(400);
    expect(image.body.error.message).toMatch(/text part/);
  });
});

describe('the other endpoints', () => {
  it('lists the model, reports health and version, tokenizes and detokenizes', async () => {
    const models = await client.models.list();
    expect(models.data.map((entry) => entry.id)).toEqual([model]);
    expect(await client.models.retrieve(model)).toMatchObject({ id: model, object: 'model', max_model_len: 512 });
    await expect(client.models.retrieve('gpt-9')).rejects.toMatchObject({ status: 404 });
    expect((await fetch(`${baseUrl}/health`)).status).toBe(200);
    expect((await fetch(`${baseUrl}/health`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${baseUrl}/ping`)).status).toBe(200);
    expect((await fetch(`${baseUrl}/ping`, { method: 'POST' })).status).toBe(200);
    expect(await (await fetch(`${baseUrl}/version`)).json()).toEqual({ version: '1.2.3' });
    const tokenized = await post('/tokenize', { prompt: 'Hello world' });
    expect(tokenized.body).toEqual({ count: 2, max_model_len: 512, tokens: [9707, 1879] });
    expect((await post('/detokenize', { tokens: [9707, 1879] })).body).toEqual({ prompt: 'Hello world' });
    expect((await post('/detokenize', { tokens: [-1] })).status).toBe(400);
  });

  it('serves /metrics in the Prometheus text format with the series vLLM users watch', async () => {
    const response = await fetch(`${baseUrl}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0.0.4/);
    const families = parsePrometheusTextFormat(await response.text());
    const names = new Set(families.map((family) => family.name));
    for (const name of [
      'pagoda:num_requests_running',
      'pagoda:num_requests_waiting',
      'pagoda:kv_cache_usage_perc',
      'pagoda:num_preemptions_total',
      'pagoda:prompt_tokens_total',
      'pagoda:generation_tokens_total',
      'pagoda:request_success_total',
      'pagoda:prefix_cache_queries_total',
      'pagoda:prefix_cache_hits_total',
      'pagoda:time_to_first_token_seconds',
      'pagoda:inter_token_latency_seconds',
      'pagoda:e2e_request_latency_seconds',
    ]) {
      expect(names).toContain(name);
    }
    const ttft = families.find((family) => family.name === 'pagoda:time_to_first_token_seconds')!;
    expect(ttft.type).toBe('HISTOGRAM');
    expect(Number(ttft.metrics[0]!.count)).toBeGreaterThan(0);
  });

  it('answers CORS preflights from local pages, with the headers the openai SDK asks for, and no others by default', async () => {
    const preflight = (origin: string) =>
      fetch(`${baseUrl}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type,x-stainless-os,x-stainless-retry-count',
        },
      });
    const local = await preflight('http://localhost:5173');
    expect(local.status).toBe(204);
    expect(local.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    expect(local.headers.get('access-control-allow-headers')).toMatch(/x-stainless-os,x-stainless-retry-count/);
    expect((await preflight('http://127.0.0.1:3000')).headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:3000');
    expect((await preflight('http://[::1]:8080')).headers.get('access-control-allow-origin')).toBe('http://[::1]:8080');
    expect((await preflight('https://evil.example')).headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('under load', () => {
  it('serves 50 concurrent streaming clients while 10 disconnect midway, leaving no request running and no KV in use', async () => {
    const run = async (index: number) => {
      const controller = new AbortController();
      const response = await fetch(`${baseUrl}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, prompt: `Client ${index} says`, max_tokens: 40, ignore_eos: true, stream: true, temperature: 0.8, seed: index }),
        signal: controller.signal,
      });
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      let text = '';
      let events = 0;
      try {
        while (true) {
          const { done, value } = await reader.read();
          if (done) break;
          text += decoder.decode(value, { stream: true });
          events = text.split('\n\n').length - 1;
          if (index % 5 === 0 && events >= 3) {
            controller.abort();
            return 'disconnected';
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return 'disconnected';
        throw error;
      }
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      return 'completed';
    };
    const results = await Promise.all(Array.from({ length: 50 }, (_, index) => run(index)));
    expect(results.filter((result) => result === 'completed')).toHaveLength(40);
    const deadline = Date.now() + 10_000;
    let families = parsePrometheusTextFormat(await (await fetch(`${baseUrl}/metrics`)).text());
    const value = (name: string) => Number(families.find((family) => family.name === name)!.metrics[0]!.value);
    while ((value('pagoda:num_requests_running') !== 0 || value('pagoda:kv_cache_usage_perc') !== 0) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      families = parsePrometheusTextFormat(await (await fetch(`${baseUrl}/metrics`)).text());
    }
    expect(value('pagoda:num_requests_running')).toBe(0);
    expect(value('pagoda:kv_cache_usage_perc')).toBe(0);
    const success = families.find((family) => family.name === 'pagoda:request_success_total')!;
    const aborted = success.metrics.find((metric) => metric.labels?.finished_reason === 'abort');
    expect(Number(aborted!.value)).toBeGreaterThanOrEqual(10);
  }, 60_000);
});

describe('HTTP hardening', () => {
  it('refuses Host names other than loopback ones when bound to a loopback address (DNS rebinding)', async () => {
    // fetch sets Host itself; a raw request sends what a rebinding page's browser would.
    const withHost = (host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const request = httpRequest(`${baseUrl}/v1/models`, { headers: { host } }, (response) => {
          let body = '';
          response.on('data', (chunk: Buffer) => (body += chunk));
          response.on('end', () => resolve({ status: response.statusCode!, body }));
        });
        request.on('error', reject);
        request.end();
      });
    const rebound = await withHost('attacker.example:8000');
    expect(rebound.status).toBe(403);
    expect((JSON.parse(rebound.body) as ErrorBody).error).toMatchObject({ type: 'PermissionDeniedError', code: 403 });
    for (const host of ['localhost:8000', '127.0.0.1', '[::1]:1234', 'app.localhost']) expect((await withHost(host)).status, host).toBe(200);
  });

  it('allows any origin only when asked (*), and credentials when asked', async () => {
    const open = createPagodaServer({ engine, servedModelName: model, version: '1', allowedOrigins: ['*'] });
    const listed = createPagodaServer({ engine, servedModelName: model, version: '1', allowedOrigins: ['https://app.example'], allowCredentials: true });
    try {
      const openUrl = `http://127.0.0.1:${(await open.listen(0)).port}`;
      const listedUrl = `http://127.0.0.1:${(await listed.listen(0)).port}`;
      const preflight = (url: string, origin: string) =>
        fetch(`${url}/v1/completions`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
      expect((await preflight(openUrl, 'https://anywhere.example')).headers.get('access-control-allow-origin')).toBe('*');
      const allowed = await preflight(listedUrl, 'https://app.example');
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example');
      expect(allowed.headers.get('access-control-allow-credentials')).toBe('true');
      expect((await preflight(listedUrl, 'http://localhost:3000')).headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await open.close();
      await listed.close();
    }
  });

  it('sends a request id with every answer, taking the client’s x-request-id', async () => {
    const given = await fetch(`${baseUrl}/health`, { headers: { 'x-request-id': 'trace-42' } });
    expect(given.headers.get('x-request-id')).toBe('trace-42');
    expect((await fetch(`${baseUrl}/health`)).headers.get('x-request-id')).toMatch(/\S+/);
  });

  it('describes the API at /openapi.json and serves its docs at /docs', async () => {
    const spec = (await (await fetch(`${baseUrl}/openapi.json`)).json()) as { openapi: string; paths: Record<string, Record<string, { requestBody?: unknown }>> };
    expect(spec.openapi).toMatch(/^3\./);
    for (const path of ['/v1/completions', '/v1/chat/completions', '/tokenize', '/detokenize']) expect(spec.paths[path]!.post!.requestBody).toBeDefined();
    expect(JSON.stringify(spec.paths['/v1/chat/completions'])).toMatch(/max_completion_tokens/);
    const docs = await fetch(`${baseUrl}/docs`);
    expect(docs.status).toBe(200);
    expect(await docs.text()).toMatch(/swagger/i);
  });

  it('exports prom-client’s process and Node.js metrics beside Pagoda’s', async () => {
    const names = new Set(parsePrometheusTextFormat(await (await fetch(`${baseUrl}/metrics`)).text()).map((family) => family.name));
    for (const name of ['process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'pagoda:num_requests_running']) expect(names).toContain(name);
  });

  it('answers an unsupported content type with 415', async () => {
    const response = await fetch(`${baseUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: 'a,b' });
    expect(response.status).toBe(415);
    expect(((await response.json()) as ErrorBody).error.message).toMatch(/application\/json/);
  });

  it('names chat_template when a request template is refused or fails, messages when the model’s fails', async () => {
    const refused = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], chat_template: '{{ 1 }}' });
    expect(refused.status).toBe(400);
    expect(refused.body.error.param).toBe('chat_template');
    const trusting = createPagodaServer({ engine, servedModelName: model, version: '1', trustRequestChatTemplate: true });
    const url = `http://127.0.0.1:${(await trusting.listen(0)).port}`;
    try {
      const ask = async (body: unknown) => {
        const response = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { status: response.status, error: ((await response.json()) as ErrorBody).error };
      };
      expect(await ask({ model, messages: [{ role: 'user', content: 'x' }], chat_template: '{% for %}', max_tokens: 1 })).toMatchObject({ status: 400, error: { param: 'chat_template' } });
      const rendered = await ask({ model, messages: [{ role: 'user', content: 'x' }], chat_template: 'Q: {{ messages[0].content }} A:', max_tokens: 1 });
      expect(rendered.status).toBe(200);
    } finally {
      await trusting.close();
    }
  });

  it('tokenizes messages with the server’s chat template, as chat completions render them', async () => {
    const templated = createPagodaServer({ engine, servedModelName: model, version: '1', chatTemplate: 'User said: {{ messages[0].content }}' });
    const url = `http://127.0.0.1:${(await templated.listen(0)).port}`;
    try {
      const response = await fetch(`${url}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'Hello world' }] }) });
      const { tokens } = (await response.json()) as { tokens: number[] };
      expect(tokens).toEqual(await engine.encode('User said: Hello world', { addSpecialTokens: false }));
    } finally {
      await templated.close();
    }
  });
});

describe('prompt scoring, as evaluation harnesses ask for it', () => {
  const prompt = reference.prompts[0]! as Reference['prompts'][number] & { prefill: Array<{ ids: number[]; logits: number[]; lse: number }>; last_logits_f32_b64: string };

  /** Each position's top 5 equal the reference forward pass's logits minus their lse (position i scores token i + 1). */
  function expectScoredPrompt(logprobs: { tokens: string[]; token_logprobs: Array<number | null>; top_logprobs: Array<Record<string, number> | null>; text_offset: number[] }) {
    expect(logprobs.token_logprobs[0]).toBeNull();
    expect(logprobs.top_logprobs[0]).toBeNull();
    expect(logprobs.text_offset[0]).toBe(0);
    for (let token = 1; token < prompt.ids.length; token += 1) {
      const position = prompt.prefill[token - 1]!;
      const expected = position.ids.map((id, index) => [engine.tokenizer.decode([id], { skipSpecialTokens: false }), position.logits[index]! - position.lse] as const);
      const top = logprobs.top_logprobs[token]!;
      for (const [text, logprob] of expected) if (text in top) expect(Math.abs(top[text]! - logprob), `token ${token} ${JSON.stringify(text)}`).toBeLessThan(1e-3);
      expect(Object.keys(top).length).toBeGreaterThanOrEqual(4); // two ids may share a text
      expect(logprobs.text_offset[token]).toBe(logprobs.text_offset[token - 1]! + logprobs.tokens[token - 1]!.length);
    }
  }

  it('scores the echoed prompt of a token-id request as lm-evaluation-harness sends it (echo, logprobs, max_tokens 1)', async () => {
    const completion = await client.completions.create({ model, prompt: prompt.ids, echo: true, logprobs: 5, max_tokens: 1, temperature: 0 } as never);
    const choice = completion.choices[0]!;
    const logprobs = choice.logprobs! as unknown as Parameters<typeof expectScoredPrompt>[0];
    expect(logprobs.tokens).toHaveLength(prompt.ids.length + 1);
    expectScoredPrompt(logprobs);
    expect(choice.text.startsWith(logprobs.tokens.slice(0, prompt.ids.length).join(''))).toBe(true);
    // The generated token's logprob, against the reference's whole last-position row.
    const last = decodeFloat32Base64(prompt.last_logits_f32_b64);
    const max = last.reduce((best, value) => Math.max(best, value), -Infinity);
    const lse = max + Math.log(last.reduce((sum, value) => sum + Math.exp(value - max), 0));
    const generated = last.indexOf(max);
    expect(Math.abs(logprobs.token_logprobs[prompt.ids.length]! - (last[generated]! - lse))).toBeLessThan(1e-3);
  });

  it('scores only, with max_tokens 0; streamed alike; and answers vLLM’s prompt_logprobs on both endpoints', async () => {
    const completion = await client.completions.create({ model, prompt: prompt.ids, echo: true, logprobs: 5, max_tokens: 0 } as never);
    const logprobs = completion.choices[0]!.logprobs! as unknown as Parameters<typeof expectScoredPrompt>[0];
    expect(logprobs.tokens).toHaveLength(prompt.ids.length);
    expect(completion.usage!.completion_tokens).toBe(0);
    expectScoredPrompt(logprobs);
    const stream = await client.completions.create({ model, prompt: prompt.ids, echo: true, logprobs: 5, max_tokens: 0, stream: true } as never);
    const streamed: Array<number | null> = [];
    for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completion>) streamed.push(...(chunk.choices[0]?.logprobs?.token_logprobs ?? []));
    expect(streamed).toEqual(logprobs.token_logprobs);
    const vllm = await post('/v1/completions', { model, prompt: prompt.ids, max_tokens: 1, prompt_logprobs: 2 });
    const field = (vllm.body as unknown as { choices: Array<{ prompt_logprobs: Array<Record<string, { logprob: number; rank: number }> | null> }> }).choices[0]!.prompt_logprobs;
    expect(field).toHaveLength(prompt.ids.length);
    expect(field[0]).toBeNull();
    expect(field[1]![String(prompt.ids[1])]).toMatchObject({ logprob: logprobs.token_logprobs[1] });
    const chat = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1, prompt_logprobs: 0 });
    expect((chat.body as unknown as { prompt_logprobs: unknown[] }).prompt_logprobs[0]).toBeNull();
    expect((await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 0 })).body.error.param).toBe('max_tokens');
  });
});

describe('the rest of the OpenAI and vLLM surface', () => {
  it('checks best_of against n: equal is fine, less is a 400, more is refused (as vLLM V1)', async () => {
    expect((await post('/v1/completions', { model, prompt: 'x', max_tokens: 1, best_of: 1 })).status).toBe(200);
    expect(await post('/v1/completions', { model, prompt: 'x', max_tokens: 1, n: 2, temperature: 1, best_of: 1 })).toMatchObject({ status: 400, body: { error: { param: 'best_of', message: expect.stringMatching(/at least n \(2\)/) } } });
    expect(await post('/v1/completions', { model, prompt: 'x', max_tokens: 1, best_of: 3 })).toMatchObject({ status: 400, body: { error: { param: 'best_of' } } });
  });

  it('honours skip_special_tokens in text and streams', async () => {
    // <|endoftext|> (151643) is special; ignore_eos keeps it from ending the output.
    const body = { model, prompt: 'Hi', max_tokens: 3, ignore_eos: true, temperature: 0, logit_bias: { '151643': 100 } };
    const skipped = await post('/v1/completions', body);
    expect((skipped.body as unknown as OpenAI.Completion).choices[0]!.text).toBe('');
    const kept = await post('/v1/completions', { ...body, skip_special_tokens: false, spaces_between_special_tokens: true });
    expect((kept.body as unknown as OpenAI.Completion).choices[0]!.text).toBe('<|endoftext|>'.repeat(3));
    const stream = await client.completions.create({ ...body, skip_special_tokens: false, stream: true } as never);
    let text = '';
    for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completion>) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe('<|endoftext|>'.repeat(3));
  });

  it('reports each token’s raw bytes in chat logprobs, so split characters can be rebuilt', async () => {
    // One four-byte character takes several byte tokens; make the reply each of them in turn.
    const ids = await engine.encode('𓀀', { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(1);
    const bytes: number[] = [];
    for (const id of ids) {
      const completion = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 1, temperature: 0, logprobs: true, logit_bias: { [id]: 100 } });
      const [token] = completion.choices[0]!.logprobs!.content!;
      expect(Buffer.from(token!.bytes!).equals(Buffer.from('\uFFFD'))).toBe(false);
      bytes.push(...token!.bytes!);
    }
    expect(Buffer.from(bytes).toString('utf8')).toBe('𓀀');
  });

  it('refuses fields it knows and does not implement, and ignores the ones nobody defines', async () => {
    for (const [field, value] of [['use_beam_search', true], ['truncate_prompt_tokens', 10], ['allowed_token_ids', [1]], ['return_tokens_as_token_ids', true]] as const) {
      const response = await post('/v1/completions', { model, prompt: 'x', max_tokens: 1, [field]: value });
      expect(response, field).toMatchObject({ status: 400, body: { error: { param: field } } });
    }
    expect((await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], max_tokens: 1, functions: [{ name: 'f' }] })).body.error.param).toBe('functions');
    expect((await post('/v1/completions', { model, prompt: 'x', max_tokens: 1, use_beam_search: false, guided_decoding_backend: 'xgrammar', some_future_field: 1 })).status).toBe(200);
  });

  it('adds special tokens to a text prompt unless add_special_tokens is false, and salts the prefix cache', async () => {
    const withSpecial = await post('/v1/completions', { model, prompt: 'Hello world', max_tokens: 1 });
    const without = await post('/v1/completions', { model, prompt: 'Hello world', max_tokens: 1, add_special_tokens: false });
    const usage = (response: { body: Record<string, unknown> }) => (response.body.usage as { prompt_tokens: number }).prompt_tokens;
    expect(usage(without)).toBeLessThanOrEqual(usage(withSpecial));
    const prompt = Array.from({ length: 64 }, (_, index) => 1000 + index);
    const hits = async (salt: string) => {
      const before = engine.makeStats().prefixCacheHits;
      expect((await post('/v1/completions', { model, prompt, max_tokens: 1, cache_salt: salt })).status).toBe(200);
      return engine.makeStats().prefixCacheHits - before;
    };
    await hits('tenant-a');
    expect(await hits('tenant-a')).toBeGreaterThan(0);
    expect(await hits('tenant-b')).toBe(0);
  });

  it('exports the metrics under vLLM’s names and labels too, when asked', async () => {
    const compatible = createPagodaServer({ engine, servedModelName: model, version: '1', vllmCompatibleMetrics: true });
    const url = `http://127.0.0.1:${(await compatible.listen(0)).port}`;
    try {
      await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, prompt: 'x', max_tokens: 2 }) });
      const families = parsePrometheusTextFormat(await (await fetch(`${url}/metrics`)).text());
      const byName = new Map(families.map((family) => [family.name, family]));
      for (const name of [
        'vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc', 'vllm:prompt_tokens_total',
        'vllm:generation_tokens_total', 'vllm:request_success_total', 'vllm:time_to_first_token_seconds', 'vllm:inter_token_latency_seconds',
        'vllm:time_per_output_token_seconds', 'vllm:e2e_request_latency_seconds', 'vllm:request_prompt_tokens', 'vllm:request_generation_tokens',
        'vllm:num_preemptions_total', 'vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total', 'pagoda:num_requests_running',
      ]) expect(byName.has(name), name).toBe(true);
      expect(byName.get('vllm:num_requests_waiting')!.metrics[0]!.labels).toEqual({ model_name: model, engine: '0' });
      const ttft = byName.get('vllm:time_to_first_token_seconds')!.metrics[0]! as unknown as { buckets: Record<string, string> };
      expect(Object.keys(ttft.buckets)).toContain('0.001');
    } finally {
      await compatible.close();
    }
  });
});

describe('drain at shutdown', () => {
  it('cuts a stream still running at the drain deadline with an error event, and says how many it cut', async () => {
    const draining = createPagodaServer({ engine, servedModelName: model, version: '1' });
    const url = `http://127.0.0.1:${(await draining.listen(0)).port}`;
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'Count', max_tokens: 500, min_tokens: 500, ignore_eos: true, stream: true }),
    });
    const reader = response.body!.getReader();
    await reader.read(); // the stream has begun
    const closing = draining.close(100);
    let text = '';
    const decoder = new TextDecoder();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(await closing).toEqual({ cut: 1 });
    const events = text.trim().split('\n\n');
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(JSON.parse(events.at(-2)!.slice(6))).toMatchObject({ error: { code: 503, message: 'the server shut down before this request finished' } });
  });
});

describe('access control and overload', () => {
  it('protects /v1/* with the API key (401) and answers 429 past the waiting limit', async () => {
    const guarded = createPagodaServer({ engine, servedModelName: model, version: '1', apiKey: 'secret', maxWaitingRequests: 0 });
    const address = await guarded.listen(0);
    const url = `http://127.0.0.1:${address.port}`;
    try {
      const missing = await fetch(`${url}/v1/models`);
      expect(missing.status).toBe(401);
      expect(((await missing.json()) as ErrorBody).error.type).toBe('AuthenticationError');
      expect((await fetch(`${url}/health`)).status).toBe(200); // not under /v1
      const keyed = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'secret', maxRetries: 0 });
      expect((await keyed.models.list()).data).toHaveLength(1);
      expect((await fetch(`${url}/v1/models`, { headers: { authorization: 'bearer secret' } })).status).toBe(200); // any case
      expect((await fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer secre' } })).status).toBe(401);
      expect((await fetch(`${url}/v1/models`, { headers: { authorization: 'Basic secret' } })).status).toBe(401);
      expect((await fetch(`${url}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"x"}' })).status).toBe(401);
      expect((await fetch(`${url}/metrics`)).status).toBe(200);
      const overloaded = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer secret' },
        body: JSON.stringify({ model, prompt: 'hi' }),
      });
      expect(overloaded.status).toBe(429);
      expect(overloaded.headers.get('retry-after')).toBe('1');
    } finally {
      await guarded.close();
    }
  });

  it('drains an in-flight stream on close, then stops accepting', async () => {
    const draining = createPagodaServer({ engine, servedModelName: model, version: '1' });
    const address = await draining.listen(0);
    const url = `http://127.0.0.1:${address.port}`;
    const streaming = fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'Count', max_tokens: 30, ignore_eos: true, stream: true }),
    }).then((response) => response.text());
    await new Promise((resolve) => setTimeout(resolve, 30));
    const closing = draining.close();
    const text = await streaming;
    await closing;
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});

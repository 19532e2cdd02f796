/**
 * /v1/embeddings on a pooling model, through the clients RAG stacks use (openai, LangChain, the Vercel AI SDK),
 * against the real server: every vector must be the engine's own, whatever the client, the batch around it, or the
 * number of ranks that computed it.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { OpenAIEmbeddings } from '@langchain/openai';
import { AsyncLLM } from '@pagoda/engine';
import { cosineDistance } from '@pagoda/engine/test';
import { fixturePath } from '@pagoda/fixtures';
import { embed, embedMany } from 'ai';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPagodaServer, type ErrorBody, type PagodaServer } from './index';

const model = 'tiny-qwen3';
const texts = ['The capital of France is Paris.', 'Rome is in Italy.', 'Oslo is the capital of Norway, far in the north of Europe.'];

const started: Array<{ engine: AsyncLLM; server: PagodaServer }> = [];

async function serve(options: { tensorParallelSize?: number; generating?: boolean } = {}): Promise<{ engine: AsyncLLM; baseURL: string }> {
  const engine = await AsyncLLM.create(fixturePath(model), {
    kvCacheMemory: '16MiB',
    maxModelLen: 256,
    intraOpNumThreads: 1,
    tokenizerPoolSize: 1,
    ...(options.generating === true ? {} : { runner: 'pooling' as const }),
    ...(options.tensorParallelSize === undefined ? {} : { tensorParallelSize: options.tensorParallelSize }),
  });
  const server = createPagodaServer({ engine, servedModelName: model, version: 'embeddings' });
  started.push({ engine, server });
  return { engine, baseURL: `http://127.0.0.1:${(await server.listen(0)).port}/v1` };
}

let engine: AsyncLLM;
let baseURL: string;
let parallelURL: string;
let generatingURL: string;
let client: OpenAI;

beforeAll(async () => {
  const [single, parallel, generating] = await Promise.all([serve(), serve({ tensorParallelSize: 2 }), serve({ generating: true })]);
  ({ engine, baseURL } = single);
  parallelURL = parallel.baseURL;
  generatingURL = generating.baseURL;
  client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  for (const { engine: each, server } of started) {
    await server.close();
    await each.close();
  }
});

vi.setConfig({ testTimeout: 60_000 });

async function post(url: string, body: unknown) {
  const response = await fetch(`${url}/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> & ErrorBody };
}

/** The engine's own vectors for `texts`, one request at a time: what every client must get back. */
async function engineVectors(): Promise<(readonly number[])[]> {
  const vectors = [];
  for (const text of texts) vectors.push((await engine.embed({ prompt: text })).embedding);
  return vectors;
}

describe('/v1/embeddings', () => {
  it("gives the engine's vectors through openai's client (base64, its default) and as floats, with usage", async () => {
    const expected = await engineVectors();
    const encoded = await client.embeddings.create({ model, input: texts });
    const floats = await client.embeddings.create({ model, input: texts, encoding_format: 'float' });
    expect(encoded.object).toBe('list');
    expect(encoded.model).toBe(model);
    for (const response of [encoded, floats]) {
      expect(response.data.map((entry) => entry.index)).toEqual([0, 1, 2]);
      response.data.forEach((entry, index) => {
        expect(entry.object).toBe('embedding');
        expect(entry.embedding).toHaveLength(64);
        expect(cosineDistance(entry.embedding, expected[index]!)).toBeLessThan(1e-5);
      });
    }
    const tokens = await Promise.all(texts.map((text) => engine.encode(text)));
    const promptTokens = tokens.reduce((sum, ids) => sum + ids.length, 0);
    expect(floats.usage).toEqual({ prompt_tokens: promptTokens, total_tokens: promptTokens });
  });

  it('gives one input alone what it gets in a batch, and token ids what their text gets', async () => {
    const batch = await client.embeddings.create({ model, input: texts, encoding_format: 'float' });
    const ids = await engine.encode(texts[2]!);
    for (const [index, text] of texts.entries()) {
      const alone = await client.embeddings.create({ model, input: text, encoding_format: 'float' });
      expect(cosineDistance(alone.data[0]!.embedding, batch.data[index]!.embedding), `input ${index}`).toBeLessThan(1e-5);
    }
    const fromIds = await client.embeddings.create({ model, input: [ids, ids.slice(0, 3)], encoding_format: 'float' });
    expect(cosineDistance(fromIds.data[0]!.embedding, batch.data[2]!.embedding)).toBeLessThan(1e-5);
    expect(fromIds.usage.prompt_tokens).toBe(ids.length + 3);
  });

  it('gives at tensor_parallel_size 2 what one rank gives', async () => {
    const single = await client.embeddings.create({ model, input: texts, encoding_format: 'float' });
    const parallel = await new OpenAI({ baseURL: parallelURL, apiKey: 'unused', maxRetries: 0 }).embeddings.create({ model, input: texts, encoding_format: 'float' });
    parallel.data.forEach((entry, index) => expect(cosineDistance(entry.embedding, single.data[index]!.embedding), `input ${index}`).toBeLessThan(1e-5));
  });

  it('cuts to `dimensions` and renormalizes, as Matryoshka models are used', async () => {
    const full = await client.embeddings.create({ model, input: texts[0]!, encoding_format: 'float' });
    const cut = await client.embeddings.create({ model, input: texts[0]!, encoding_format: 'float', dimensions: 16 });
    const vector = cut.data[0]!.embedding;
    expect(vector).toHaveLength(16);
    expect(Math.abs(Math.hypot(...vector) - 1)).toBeLessThan(1e-6);
    expect(cosineDistance(vector, full.data[0]!.embedding.slice(0, 16))).toBeLessThan(1e-6);
  });

  it("serves LangChain's OpenAIEmbeddings: embedQuery and embedDocuments", async () => {
    const expected = await engineVectors();
    const embeddings = new OpenAIEmbeddings({ model, apiKey: 'unused', configuration: { baseURL }, maxRetries: 0 });
    const query = await embeddings.embedQuery(texts[0]!);
    expect(cosineDistance(query, expected[0]!)).toBeLessThan(1e-5);
    const documents = await embeddings.embedDocuments(texts);
    documents.forEach((vector, index) => expect(cosineDistance(vector, expected[index]!)).toBeLessThan(1e-5));
  });

  it("serves the AI SDK's embed and embedMany", async () => {
    const expected = await engineVectors();
    const provider = createOpenAI({ baseURL, apiKey: 'unused' });
    const one = await embed({ model: provider.embedding(model), value: texts[1]!, maxRetries: 0 });
    expect(cosineDistance(one.embedding, expected[1]!)).toBeLessThan(1e-5);
    const many = await embedMany({ model: provider.embedding(model), values: texts, maxRetries: 0 });
    many.embeddings.forEach((vector, index) => expect(cosineDistance(vector, expected[index]!)).toBeLessThan(1e-5));
    expect(many.usage.tokens).toBeGreaterThan(0);
  });

  it('refuses bad input with a 400 naming the field, and keeps serving', async () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ model, input: [] }, 'input', /input must not be empty/],
      [{ model, input: '' }, 'input', /input\[0\] is empty/],
      [{ model, input: [[1, 2], []] }, 'input', /input\[1\] is empty/],
      [{ model, input: [5, 999_999] }, 'input', /token id 999999, outside the vocabulary/],
      [{ model, input: 'x '.repeat(400) }, 'input', /maximum context length is 256 tokens/],
      [{ model, input: 'hi', dimensions: 0 }, 'dimensions', /dimensions must be in \[1, 64\]/],
      [{ model, input: 'hi', dimensions: 65 }, 'dimensions', /dimensions must be in \[1, 64\]/],
      [{ model, input: 'hi', encoding_format: 'int8' }, 'encoding_format', /encoding_format/],
      [{ model, input: { text: 'hi' } }, 'input', /a string, an array of strings/],
      [{ model, input: 'hi', truncate_prompt_tokens: 0 }, 'truncate_prompt_tokens', /truncate_prompt_tokens must be -1/],
    ];
    for (const [body, param, message] of cases) {
      const { status, body: error } = await post(baseURL, body);
      expect(status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(error.error.param).toBe(param);
      expect(error.error.message).toMatch(message);
    }
    const unknownModel = await post(baseURL, { model: 'other', input: 'hi' });
    expect(unknownModel.status).toBe(404);
    // truncate_prompt_tokens keeps the last tokens, so a long input fits.
    const truncated = await post(baseURL, { model, input: 'x '.repeat(400), truncate_prompt_tokens: 8 });
    expect(truncated.status).toBe(200);
    expect((truncated.body.usage as { prompt_tokens: number }).prompt_tokens).toBe(8);
    expect(engine.makeStats()).toMatchObject({ numRunningRequests: 0, numWaitingRequests: 0, kvCacheUsage: 0 });
  });

  it('lets go of every input of a request whose client leaves, and keeps serving', async () => {
    const controller = new AbortController();
    const promptTokensBefore = engine.makeStats().promptTokens;
    const inputs = Array.from({ length: 48 }, (_, index) => Array.from({ length: 200 }, (_, token) => (token * 13 + index) % 5000));
    const leaving = fetch(`${baseURL}/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, input: inputs }),
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 30);
    await expect(leaving).rejects.toThrow();
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && engine.makeStats().numRunningRequests + engine.makeStats().numWaitingRequests > 0) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(engine.makeStats()).toMatchObject({ numRunningRequests: 0, numWaitingRequests: 0, kvCacheUsage: 0 });
    // The inputs still queued when the client left were aborted, not computed.
    expect(engine.makeStats().promptTokens - promptTokensBefore).toBeLessThan(48 * 200);
    const after = await client.embeddings.create({ model, input: 'still there?' });
    expect(after.data).toHaveLength(1);
  });

  it('refuses text endpoints on a pooling model and embeddings on a generating one, naming the model', async () => {
    const completion = await fetch(`${baseURL}/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, prompt: 'hi' }) });
    expect(completion.status).toBe(400);
    expect(((await completion.json()) as ErrorBody).error.message).toMatch(/does not support the Completions API: it is served with --runner pooling/);
    const refused = await post(generatingURL, { model, input: 'hi' });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ param: 'model', message: expect.stringMatching(/does not support the Embeddings API: serve it with --runner pooling/) });
  });
});

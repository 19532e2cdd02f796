import { loadModelConfig } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPagodaServer, type ErrorBody, type PagodaServer } from './index';

describe('createPagodaServer over real HTTP', () => {
  let server: PagodaServer;
  let baseUrl: string;

  beforeAll(async () => {
    const modelConfig = await loadModelConfig(fixturePath('tiny-qwen2'));
    server = createPagodaServer({ servedModelName: 'tiny-qwen2', modelConfig, version: '1.2.3' });
    const address = await server.listen(0);
    baseUrl = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    await server.close();
  });

  it('answers /health with 200 and /version with the version', async () => {
    expect((await fetch(`${baseUrl}/health`)).status).toBe(200);
    expect(await (await fetch(`${baseUrl}/version`)).json()).toEqual({ version: '1.2.3' });
  });

  it('lists the served model with its maximum context length', async () => {
    const body = (await (await fetch(`${baseUrl}/v1/models`)).json()) as { object: string; data: unknown[] };
    expect(body.object).toBe('list');
    expect(body.data).toEqual([expect.objectContaining({ id: 'tiny-qwen2', object: 'model', max_model_len: 32768 })]);
  });

  it('answers an unknown route with an OpenAI-style 404 body', async () => {
    const response = await fetch(`${baseUrl}/v2/nothing`);
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      error: { message: 'no route for GET /v2/nothing', type: 'NotFoundError', param: null, code: 404 },
    });
  });

  it('says plainly that generation is not implemented yet, and keeps serving', async () => {
    const response = await fetch(`${baseUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-qwen2', prompt: 'hi' }),
    });
    expect(response.status).toBe(501);
    expect(((await response.json()) as ErrorBody).error.message).toMatch(/not implemented yet/);
    expect((await fetch(`${baseUrl}/health`)).status).toBe(200);
  });
});

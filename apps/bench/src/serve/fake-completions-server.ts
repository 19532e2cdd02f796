// A stand-in OpenAI-compatible server for the serve benchmark's tests: streams one chunk per token of max_tokens,
// then a usage chunk and [DONE], and records what it was sent. Not a model of any real server's timing.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeServerOptions {
  readonly model?: string;
  /** Milliseconds between chunks (default 1). */
  readonly chunkDelayMs?: number;
  /** Answers HTTP 500 to the requests with these indices (0-based, in arrival order). */
  readonly failRequests?: ReadonlySet<number>;
  /** Leaves usage out of the stream, as some servers do. */
  readonly omitUsage?: boolean;
}

export interface FakeServer {
  readonly baseUrl: string;
  /** Request bodies in arrival order. */
  readonly bodies: Array<Record<string, unknown>>;
  /** The most completion requests in flight at once. */
  readonly maxInFlight: () => number;
  close(): Promise<void>;
}

export async function startFakeCompletionsServer(options: FakeServerOptions = {}): Promise<FakeServer> {
  const model = options.model ?? 'fake-model';
  const bodies: Array<Record<string, unknown>> = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    if (request.method === 'GET' && request.url === '/v1/models') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ object: 'list', data: [{ id: model, object: 'model' }] }));
      return;
    }
    if (request.method !== 'POST' || request.url !== '/v1/completions') {
      response.writeHead(404).end();
      return;
    }
    let text = '';
    for await (const chunk of request) text += String(chunk);
    const body = JSON.parse(text) as Record<string, unknown>;
    const index = bodies.push(body) - 1;
    if (options.failRequests?.has(index) || body.model !== model) {
      response.writeHead(body.model !== model ? 404 : 500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { message: body.model !== model ? 'no such model' : 'injected failure' } }));
      return;
    }
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const maxTokens = body.max_tokens as number;
      const promptTokens = Array.isArray(body.prompt) ? body.prompt.length : String(body.prompt).length;
      const base = { id: `cmpl-${index}`, object: 'text_completion', created: 0, model };
      for (let token = 0; token < maxTokens; token++) {
        await sleep(options.chunkDelayMs ?? 1);
        const finishReason = token === maxTokens - 1 ? 'length' : null;
        response.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, text: ` t${token}`, logprobs: null, finish_reason: finishReason }] })}\n\n`);
      }
      if (!options.omitUsage) {
        const usage = { prompt_tokens: promptTokens, completion_tokens: maxTokens, total_tokens: promptTokens + maxTokens };
        response.write(`data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`);
      }
      response.end('data: [DONE]\n\n');
    } finally {
      inFlight--;
    }
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => response.destroy(error as Error));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    bodies,
    maxInFlight: () => maxInFlight,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

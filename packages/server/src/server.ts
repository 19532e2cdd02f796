import {
  EngineDeadError,
  PagodaEngineError,
  RequestRejectedError,
  type RequestOutput,
  SamplingParamsError,
} from '@pagoda/engine';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiError, errorBody } from './http-error';
import { handleChatCompletions, handleCompletions, type HandlerContext, type ResponseSink, type ServedEngine } from './openai';
import { PagodaMetrics } from './pagoda-metrics';
import { prometheusContentType } from './metrics';
import { type Body, optionalBoolean, optionalString, readMessages } from './protocol';

export type { ServedEngine } from './openai';

export interface PagodaServerOptions {
  readonly engine: ServedEngine;
  /** The model name clients send (`model`) and `/v1/models` lists. */
  readonly servedModelName: string;
  /** Reported by `GET /version`. */
  readonly version: string;
  /** When set, `/v1/*` needs `Authorization: Bearer <apiKey>`. */
  readonly apiKey?: string | undefined;
  /** Origins allowed by CORS: `['*']` (default) allows any; `[]` sends no CORS headers. */
  readonly allowedOrigins?: readonly string[];
  /** Beyond this many requests waiting for their first token, new ones get 429 (default: no limit). */
  readonly maxWaitingRequests?: number | undefined;
  /** Request bodies larger than this get 400 (default 16 MiB). */
  readonly maxBodyBytes?: number;
  /** A chat template that replaces the model's own. */
  readonly chatTemplate?: string | undefined;
}

export interface PagodaServer {
  readonly httpServer: Server;
  readonly metrics: PagodaMetrics;
  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host?: string): Promise<AddressInfo>;
  /**
   * Stops accepting connections, lets in-flight requests finish (streams included), then resolves. After
   * `drainTimeoutMs` the remaining connections are cut.
   */
  close(drainTimeoutMs?: number): Promise<void>;
  /** Requests being served right now. */
  readonly numInFlight: number;
}

/** Maps what a handler threw to a status and an OpenAI-style body. One table: the transport owns the statuses. */
function toErrorResponse(error: unknown): { status: number; param: string | null; message: string } {
  if (error instanceof ApiError) return { status: error.status, param: error.param, message: error.message };
  if (SamplingParamsError.isInstance(error)) return { status: 400, param: error.param, message: error.message };
  if (error instanceof RequestRejectedError) return { status: 400, param: error.param ?? null, message: error.message };
  if (error instanceof EngineDeadError) return { status: 503, param: null, message: error.message };
  if (PagodaEngineError.isInstance(error)) {
    const clientErrors = new Set(['no_chat_template', 'chat_template_error', 'invalid_messages', 'invalid_request', 'duplicate_request_id']);
    if (clientErrors.has(error.code)) return { status: 400, param: (error as { param?: string }).param ?? null, message: error.message };
    if (error.code === 'engine_closed') return { status: 503, param: null, message: error.message };
  }
  return { status: 500, param: null, message: error instanceof Error ? error.message : String(error) };
}

/** Creates the OpenAI-compatible HTTP server over an engine. */
export function createPagodaServer(options: PagodaServerOptions): PagodaServer {
  const { engine, servedModelName } = options;
  const created = Math.floor(Date.now() / 1000);
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 2 ** 20;
  const allowedOrigins = options.allowedOrigins ?? ['*'];
  const metrics = new PagodaMetrics(servedModelName);
  const waiting = { count: 0 };
  let inFlight = 0;
  let draining = false;
  let drained: (() => void) | undefined;

  const handlerContext: HandlerContext = {
    engine,
    servedModelName,
    chatTemplate: options.chatTemplate,
    onFinished: (output: RequestOutput) => metrics.recordFinished(output),
    onTokens: (count: number) => metrics.recordGenerated(count),
    waiting,
  };

  const applyCors = (request: IncomingMessage, response: ServerResponse) => {
    const origin = request.headers.origin;
    if (origin === undefined || allowedOrigins.length === 0) return;
    if (allowedOrigins.includes('*') || allowedOrigins.includes(origin)) {
      response.setHeader('access-control-allow-origin', allowedOrigins.includes('*') ? '*' : origin);
      response.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
      response.setHeader('access-control-allow-headers', 'authorization, content-type');
      if (!allowedOrigins.includes('*')) response.setHeader('vary', 'origin');
    }
  };

  const route = async (request: IncomingMessage, response: ServerResponse, sink: ResponseSink & { started: boolean }) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const method = request.method ?? 'GET';
    applyCors(request, response);
    if (method === 'OPTIONS') {
      response.writeHead(204).end();
      return;
    }
    if (path.startsWith('/v1/') && options.apiKey !== undefined) {
      if (request.headers.authorization !== `Bearer ${options.apiKey}`) {
        throw new ApiError(401, 'Missing or invalid API key: send it as "Authorization: Bearer <key>"');
      }
    }
    const get = (handler: () => void) => {
      if (method !== 'GET') throw new ApiError(405, `${path} accepts GET, got ${method}`);
      handler();
    };
    switch (path) {
      case '/health':
        return get(() =>
          engine.health() === 'ready' ? sink.json(200, {}) : sink.json(503, errorBody(503, `the engine is ${engine.health()}`)),
        );
      case '/version':
        return get(() => sink.json(200, { version: options.version }));
      case '/metrics':
        return get(() => {
          const text = metrics.render(engine.makeStats());
          response.writeHead(200, { 'content-type': prometheusContentType, 'content-length': Buffer.byteLength(text) });
          response.end(text);
        });
      case '/v1/models':
        return get(() =>
          sink.json(200, {
            object: 'list',
            data: [
              {
                id: servedModelName,
                object: 'model',
                created,
                owned_by: 'pagoda',
                root: engine.context.modelDir,
                parent: null,
                max_model_len: engine.context.options.maxModelLen,
              },
            ],
          }),
        );
    }
    const postRoutes: Record<string, (body: Body) => Promise<void> | void> = {
      '/v1/completions': (body) => handleCompletions(handlerContext, body, sink),
      '/v1/chat/completions': (body) => handleChatCompletions(handlerContext, body, sink),
      '/tokenize': (body) => tokenize(body, sink),
      '/detokenize': (body) => detokenize(body, sink),
    };
    const handler = postRoutes[path];
    if (handler === undefined) throw new ApiError(404, `no route for ${method} ${path}`);
    if (method !== 'POST') throw new ApiError(405, `${path} accepts POST, got ${method}`);
    const body = await readJsonBody(request, maxBodyBytes);
    if (path.startsWith('/v1/')) {
      if (engine.health() !== 'ready') throw new ApiError(503, `the engine is ${engine.health()}`);
      if (options.maxWaitingRequests !== undefined && waiting.count >= options.maxWaitingRequests) {
        throw new ApiError(429, `The server is overloaded: ${waiting.count} requests are waiting (limit ${options.maxWaitingRequests}). Retry later.`);
      }
    }
    await handler(body);
  };

  const tokenize = (body: Body, sink: ResponseSink) => {
    const { tokenizer, options: engineOptions } = engine.context;
    let tokens: number[];
    if (body.messages !== undefined) {
      const text = tokenizer.applyChatTemplate(readMessages(body), { addGenerationPrompt: optionalBoolean(body, 'add_generation_prompt') ?? true });
      tokens = tokenizer.encode(text, { addSpecialTokens: optionalBoolean(body, 'add_special_tokens') ?? false });
    } else {
      const prompt = optionalString(body, 'prompt');
      if (prompt === undefined) throw new ApiError(400, 'prompt (a string) or messages is required', 'prompt');
      tokens = tokenizer.encode(prompt, { addSpecialTokens: optionalBoolean(body, 'add_special_tokens') ?? true });
    }
    sink.json(200, { count: tokens.length, max_model_len: engineOptions.maxModelLen, tokens });
  };
  const detokenize = (body: Body, sink: ResponseSink) => {
    const tokens = body.tokens;
    const vocabSize = engine.context.modelConfig.vocabSize;
    if (!Array.isArray(tokens) || !tokens.every((token) => Number.isInteger(token) && token >= 0 && token < vocabSize)) {
      throw new ApiError(400, `tokens must be an array of token ids in [0, ${vocabSize})`, 'tokens');
    }
    sink.json(200, { prompt: engine.context.tokenizer.decode(tokens as number[]) });
  };

  const httpServer = createServer((request, response) => {
    inFlight += 1;
    const sink = makeSink(response);
    response.on('close', () => {
      inFlight -= 1;
      if (draining && inFlight === 0) drained?.();
    });
    route(request, response, sink).then(
      () => undefined,
      (error: unknown) => {
        const { status, param, message } = toErrorResponse(error);
        if (status >= 500 && !(error instanceof ApiError)) console.error(`pagoda: ${request.method} ${request.url}:`, error);
        if (sink.isClosed) return;
        if (!sink.started) sink.json(status, errorBody(status, message, param));
        else {
          // The stream had begun: report the error in it, then end it.
          sink.event(errorBody(status, message, param));
          sink.done();
        }
      },
    );
  });
  httpServer.headersTimeout = 60_000;
  httpServer.requestTimeout = 0; // long streams are fine; idle sockets are handled by keep-alive timeouts

  return {
    httpServer,
    metrics,
    get numInFlight() {
      return inFlight;
    },
    listen(port, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(port, host, () => {
          httpServer.off('error', reject);
          resolve(httpServer.address() as AddressInfo);
        });
      });
    },
    async close(drainTimeoutMs = 30_000) {
      draining = true;
      const closed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
      httpServer.closeIdleConnections();
      if (inFlight > 0) {
        await Promise.race([
          new Promise<void>((resolve) => (drained = resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, drainTimeoutMs).unref()),
        ]);
      }
      httpServer.closeAllConnections();
      await closed;
    },
  };
}

function makeSink(response: ServerResponse): ResponseSink & { started: boolean } {
  let resolveClosed: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const sink = {
    started: false,
    isClosed: false,
    closed,
    json(status: number, body: unknown) {
      if (sink.isClosed || response.headersSent) return;
      const payload = JSON.stringify(body);
      response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
      response.end(payload);
    },
    event(body: unknown) {
      if (sink.isClosed) return;
      if (!sink.started) {
        sink.started = true;
        response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      }
      response.write(`data: ${JSON.stringify(body)}\n\n`);
    },
    done() {
      if (sink.isClosed) return;
      if (!sink.started) {
        sink.started = true;
        response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      }
      response.end('data: [DONE]\n\n');
    },
  };
  // The client went away before the response ended: whatever is running for it is aborted.
  response.on('close', () => {
    if (!response.writableFinished) {
      sink.isClosed = true;
      resolveClosed();
    }
  });
  return sink;
}

/** Reads a JSON object body, at most `limit` bytes. Too large, malformed or not an object: 400. */
function readJsonBody(request: IncomingMessage, limit: number): Promise<Body> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      request.resume();
      reject(new ApiError(400, `the request body is ${declared} bytes, over the limit of ${limit}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    request.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(new ApiError(400, `the request body is over the limit of ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    request.on('error', (error) => reject(error));
    request.on('end', () => {
      if (failed) return;
      const text = Buffer.concat(chunks).toString('utf8');
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        reject(new ApiError(400, `the request body is not valid JSON: ${(error as Error).message}`));
        return;
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        reject(new ApiError(400, 'the request body must be a JSON object'));
        return;
      }
      resolve(parsed as Body);
    });
  });
}

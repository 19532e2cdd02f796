import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import {
  EngineDeadError,
  EngineRequestError,
  FrontendBudgetError,
  FrontendOverloadedError,
  PagodaEngineError,
  RequestRejectedError,
  SamplingParamsError,
} from '@pagoda/engine';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { handleChatCompletions } from './chat-completions';
import { handleCompletions } from './completions';
import { Admission, type HandlerContext, type ServedEngine } from './generation';
import { ApiError, describeSchemaErrors, errorBody, type SchemaValidationError } from './http-error';
import { PagodaMetrics } from './pagoda-metrics';
import { defaultToolParserFor, type ReasoningParserName, reasoningParsers, type ToolParserName, toolParsers } from './parsers';
import { ResponseStore, handleResponses } from './responses';
import { handleEmbeddings } from './embeddings';
import { ChatCompletionRequest, CompletionRequest, DetokenizeRequest, EmbeddingRequest, ResponsesRequest, TokenizeRequest } from './schemas';
import { apiKeyMatches, corsOrigin, isLoopbackAddress, isLoopbackHost } from './security';
import { replySink, type ResponseSink } from './sink';
import { handleDetokenize, handleTokenize } from './tokenize';

export type { ServedEngine } from './generation';

export interface PagodaServerOptions {
  readonly engine: ServedEngine;
  /** The model name clients send (`model`) and `/v1/models` lists. */
  readonly servedModelName: string;
  /** Reported by `GET /version`. */
  readonly version: string;
  /** When set, every endpoint but /health, /version, /metrics and the docs needs `Authorization: Bearer <apiKey>`. */
  readonly apiKey?: string | undefined;
  /**
   * Origins CORS allows: exact origins, or `*` for any. Default: pages served from localhost, 127.0.0.1 or [::1]
   * on any port (as Ollama). `[]` sends no CORS headers.
   */
  readonly allowedOrigins?: readonly string[] | undefined;
  /** Methods a preflight may ask for (default GET, HEAD, POST). */
  readonly allowedMethods?: readonly string[] | undefined;
  /** Headers a preflight may ask for; default (or `*`): whatever it asks for (the openai SDK sends `x-stainless-*`). */
  readonly allowedHeaders?: readonly string[] | undefined;
  /** Lets CORS requests carry credentials (`access-control-allow-credentials`). */
  readonly allowCredentials?: boolean | undefined;
  /** Beyond this many sequences waiting for their first token, requests get 429 (default: no limit). */
  readonly maxWaitingRequests?: number | undefined;
  /** Request bodies larger than this get 413 (default 16 MiB). */
  readonly maxBodyBytes?: number;
  /** A chat template that replaces the model's own. */
  readonly chatTemplate?: string | undefined;
  /** Lets a request bring its own `chat_template` (vLLM's `--trust-request-chat-template`); off by default. */
  readonly trustRequestChatTemplate?: boolean | undefined;
  /** A connection that has not sent a request's headers within this many ms gets 408 (default 10,000). */
  readonly headersTimeoutMs?: number | undefined;
  /** A request (headers and body) must arrive within this many ms (default 60,000); responses may take longer. */
  readonly requestTimeoutMs?: number | undefined;
  /** An idle keep-alive connection closes after this many ms (default 5,000, uvicorn's `--timeout-keep-alive`). */
  readonly keepAliveTimeoutMs?: number | undefined;
  /** Connections beyond this many at once are refused (default 2,048). */
  readonly maxConnections?: number | undefined;
  /**
   * vLLM's `--tool-call-parser`: how tool calls are read from outputs (and forced, for `tool_choice` `required` or a
   * named function). Default: the one the chat template's format implies (Qwen's `<tool_call>`: hermes), if any.
   */
  readonly toolCallParser?: ToolParserName | undefined;
  /** vLLM's `--enable-auto-tool-choice`: `tool_choice: "auto"` (the default with tools) reads calls from outputs. */
  readonly enableAutoToolChoice?: boolean | undefined;
  /**
   * vLLM's `--reasoning-parser`: the text between `<think>` and `</think>` goes to `reasoning_content`. Give the
   * engine the same (`reasoningParser` engine option), so constraints start after the reasoning.
   */
  readonly reasoningParser?: ReasoningParserName | undefined;
  /** Also export the metrics under vLLM's names, labels and buckets (`vllm:num_requests_waiting`, …). */
  readonly vllmCompatibleMetrics?: boolean | undefined;
  /** How much the Responses API may keep for `previous_response_id`, in bytes (default 64 MiB; oldest out first). */
  readonly responsesStoreBytes?: number | undefined;
  /** A pino logger for structured request logs (request id, method, URL, status, time); default none. */
  readonly logger?: FastifyBaseLogger | undefined;
}

export interface PagodaServer {
  /** The fastify instance, for adding routes or hooks before `listen`. */
  readonly app: FastifyInstance;
  readonly httpServer: Server;
  readonly metrics: PagodaMetrics;
  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host?: string): Promise<AddressInfo>;
  /**
   * Stops accepting connections and lets in-flight requests finish (streams included). At `drainTimeoutMs` the
   * ones left are cut: a stream gets an error event, a waiting request a 503. Resolves with how many were cut.
   */
  close(drainTimeoutMs?: number): Promise<{ cut: number }>;
  /** Requests being served right now. */
  readonly numInFlight: number;
}

/** The abort reason of requests cut when the drain deadline passes. */
const shutdownReason = new ApiError(503, 'the server shut down before this request finished');

/** Paths anyone may read, API key or not (probes, metrics scrapers, the API's description). */
const publicPaths = ['/health', '/ping', '/version', '/metrics', '/openapi.json', '/docs'];

/** The folder of Swagger UI's static assets, or undefined where @fastify/swagger-ui is not installed. */
function swaggerUiStaticDir(): string | undefined {
  try {
    const assets = join(dirname(createRequire(import.meta.url).resolve('@fastify/swagger-ui')), 'static');
    return existsSync(join(assets, 'logo.svg')) ? assets : undefined;
  } catch {
    return undefined;
  }
}

/** Lets the schemas' `x-expected` (a union's words for error messages) through Ajv's strict mode. */
function addExpectedKeyword<Ajv extends { addKeyword(keyword: string): Ajv }>(ajv: Ajv): Ajv {
  return ajv.addKeyword('x-expected');
}

/** Maps what a handler threw to a status and an OpenAI-style body. One table: the transport owns the statuses. */
function toErrorResponse(error: unknown, maxBodyBytes: number): { status: number; param: string | null; message: string; headers?: Readonly<Record<string, string>> } {
  if (error instanceof ApiError) return { status: error.status, param: error.param, message: error.message, headers: error.headers };
  if (SamplingParamsError.isInstance(error)) return { status: 400, param: error.param, message: error.message };
  if (error instanceof RequestRejectedError) return { status: 400, param: error.param ?? null, message: error.message };
  if (error instanceof FrontendOverloadedError) return { status: 429, param: null, message: error.message, headers: { 'retry-after': '1' } };
  if (error instanceof FrontendBudgetError) return { status: 400, param: error.task === 'render' ? 'messages' : 'prompt', message: error.message };
  if (error instanceof EngineDeadError) return { status: 503, param: null, message: error.message };
  // The engine core refused a request the frontend had accepted (a constraint XGrammar cannot compile, ...).
  if (error instanceof EngineRequestError) return { status: 400, param: error.param ?? null, message: error.message };
  const fastifyError = error as { code?: unknown; statusCode?: unknown; validation?: SchemaValidationError[]; message?: string };
  if (Array.isArray(fastifyError.validation)) return { status: 400, ...describeSchemaErrors(fastifyError.validation) };
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, param: null, message: `the request body is over the limit of ${maxBodyBytes} bytes` };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, param: null, message: `the request body is not valid JSON: ${fastifyError.message}` };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, param: null, message: `${fastifyError.message}; send the body as application/json` };
  }
  if (PagodaEngineError.isInstance(error)) {
    const clientErrors = new Set(['no_chat_template', 'chat_template_error', 'invalid_messages', 'invalid_request', 'duplicate_request_id']);
    if (clientErrors.has(error.code)) return { status: 400, param: (error as { param?: string }).param ?? null, message: error.message };
    if (error.code === 'engine_closed') return { status: 503, param: null, message: error.message };
  }
  const status = typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 ? fastifyError.statusCode : 500;
  return { status, param: null, message: error instanceof Error ? error.message : String(error) };
}

/** Creates the OpenAI-compatible HTTP server (fastify) over an engine. */
export function createPagodaServer(options: PagodaServerOptions): PagodaServer {
  const { engine, servedModelName } = options;
  const created = Math.floor(Date.now() / 1000);
  const metrics = new PagodaMetrics(servedModelName, { vllmCompatible: options.vllmCompatibleMetrics ?? false, maxModelLen: engine.context.options.maxModelLen });
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 2 ** 20;
  const maxConnections = options.maxConnections ?? 2048;
  const timeouts = {
    headersTimeout: options.headersTimeoutMs ?? 10_000,
    requestTimeout: options.requestTimeoutMs ?? 60_000,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 5_000,
  };
  for (const [name, value, known] of [['toolCallParser', options.toolCallParser, toolParsers], ['reasoningParser', options.reasoningParser, reasoningParsers]] as const) {
    if (value !== undefined && !Object.hasOwn(known, value)) {
      throw new RangeError(`${name} must be one of ${Object.keys(known).join(', ')}, got ${JSON.stringify(value)}`);
    }
  }
  const context: HandlerContext & { responses: ResponseStore } = {
    responses: new ResponseStore(options.responsesStoreBytes),
    engine,
    servedModelName,
    chatTemplate: options.chatTemplate,
    trustRequestChatTemplate: options.trustRequestChatTemplate ?? false,
    metrics,
    admission: new Admission(options.maxWaitingRequests),
    tools: {
      toolCallParser: options.toolCallParser ?? defaultToolParserFor(options.chatTemplate ?? engine.context.tokenizer.chatTemplateSource({ tools: true })),
      enableAutoToolChoice: options.enableAutoToolChoice ?? false,
    },
    reasoningParser: options.reasoningParser,
  };
  /** Each in-flight request's stop switch: its client leaving, or the drain deadline, aborts what runs for it. */
  const inFlight = new Set<AbortController>();
  let loopbackOnly = false;

  const app = Fastify<Server, IncomingMessage, ServerResponse>({
    ...(options.logger === undefined ? { logger: false } : { loggerInstance: options.logger }),
    bodyLimit: maxBodyBytes,
    requestIdHeader: 'x-request-id',
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ...timeouts,
    // Types only: "0.5" is not a number here, and fields the schema does not list stay (and are ignored).
    ajv: {
      customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, strictNumbers: true, allErrors: false, verbose: true },
      plugins: [addExpectedKeyword],
    },
    // The connection checks run each second, so headers and request timeouts bite on time.
    serverFactory: (handler) => {
      const server = createServer({ ...timeouts, connectionsCheckingInterval: 1000 }, handler);
      server.maxConnections = maxConnections;
      return server;
    },
  });

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // A server on a loopback address answers only requests addressed to a loopback name: a page on another site
  // cannot reach it through DNS rebinding (its requests carry that site's host name).
  app.addHook('onRequest', async (request) => {
    if (loopbackOnly && !isLoopbackHost(request.headers.host)) {
      throw new ApiError(403, `Host ${JSON.stringify(request.headers.host ?? '')} is not allowed: this server listens on a loopback address and answers only localhost, 127.0.0.1 and [::1]`);
    }
  });
  void app.register(cors, {
    origin: corsOrigin(options.allowedOrigins),
    methods: [...(options.allowedMethods ?? ['GET', 'HEAD', 'POST'])],
    ...(options.allowedHeaders === undefined || options.allowedHeaders.includes('*') ? {} : { allowedHeaders: [...options.allowedHeaders] }),
    credentials: options.allowCredentials ?? false,
    strictPreflight: false,
  });
  app.addHook('onRequest', async (request) => {
    if (options.apiKey === undefined || request.method === 'OPTIONS') return;
    const path = request.url.split('?')[0]!;
    if (publicPaths.some((publicPath) => path === publicPath || path.startsWith(`${publicPath}/`))) return;
    if (!apiKeyMatches(request.headers.authorization, options.apiKey)) {
      throw new ApiError(401, 'Missing or invalid API key: send it as "Authorization: Bearer <key>"');
    }
  });

  app.setErrorHandler((error, request, reply) => {
    const { status, param, message, headers } = toErrorResponse(error, maxBodyBytes);
    if (status >= 500 && !(error instanceof ApiError)) request.log.error({ err: error }, 'request failed');
    void reply.code(status).headers(headers ?? {}).send(errorBody(status, message, param));
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(errorBody(404, `no route for ${request.method} ${request.url.split('?')[0]}`));
  });

  void app.register(swagger, {
    openapi: {
      info: { title: 'Pagoda', description: 'An OpenAI-compatible LLM server (completions, chat, tokenize) in the manner of vLLM.', version: options.version },
    },
  });
  // Swagger UI's page and assets, where its package is installed (a self-contained bundle has no room for them:
  // there /openapi.json alone describes the API). Its folder is given outright, as a bundle has no __dirname.
  const swaggerUiAssets = swaggerUiStaticDir();
  if (swaggerUiAssets !== undefined) {
    void app.register(async (docs) => {
      const { default: swaggerUi } = await import('@fastify/swagger-ui');
      await docs.register(swaggerUi, {
        routePrefix: '/docs',
        baseDir: swaggerUiAssets,
        logo: { type: 'image/svg+xml', content: readFileSync(join(swaggerUiAssets, 'logo.svg')) },
      });
    });
  }

  /**
   * A generation or tokenizer endpoint: the sink carries its result; the request's stop switch fires when the
   * client leaves or the drain deadline passes, and a request cut that way gets an error event or a 503.
   */
  const serve = <Body>(handler: (handlerContext: typeof context, body: Body, sink: ResponseSink) => Promise<void>) => {
    return async (request: FastifyRequest, reply: FastifyReply) => {
      if (engine.health() !== 'ready') throw new ApiError(503, `the engine is ${engine.health()}`);
      const stop = new AbortController();
      inFlight.add(stop);
      const sink = replySink(reply, stop);
      try {
        await handler(context, request.body as Body, sink);
        if (stop.signal.reason === shutdownReason) throw shutdownReason;
      } catch (error) {
        if (!sink.started) throw error;
        // The stream had begun: report the error in it, then end it.
        const { status, param, message } = toErrorResponse(error, maxBodyBytes);
        sink.event(errorBody(status, message, param));
        sink.done();
      } finally {
        inFlight.delete(stop);
        if (inFlight.size === 0) drained?.();
      }
      return reply;
    };
  };
  let drained: (() => void) | undefined;
  /** A text endpoint: a pooling model (`--runner pooling`) serves embeddings only, as vLLM's does. */
  const generating = <Body>(api: string, handler: (handlerContext: typeof context, body: Body, sink: ResponseSink) => Promise<void>) =>
    serve<Body>(async (handlerContext, body, sink) => {
      if (engine.context.options.runner === 'pooling') {
        throw new ApiError(400, `The model \`${servedModelName}\` does not support the ${api} API: it is served with --runner pooling, for /v1/embeddings`, 'model');
      }
      await handler(handlerContext, body, sink);
    });

  // The routes are a plugin registered after swagger's, so that its onRoute hook sees (and describes) each of them.
  void app.register(async (routes) => {
    const generationRoute = (summary: string, body: typeof CompletionRequest | typeof ChatCompletionRequest) => ({
      schema: { summary, body, tags: ['OpenAI'] },
    });
    routes.post('/v1/completions', generationRoute('Completions (legacy), streamed or not', CompletionRequest), generating('Completions', handleCompletions));
    routes.post('/v1/chat/completions', generationRoute('Chat completions, streamed or not', ChatCompletionRequest), generating('Chat Completions', handleChatCompletions));
    routes.post('/v1/responses', { schema: { summary: 'Responses (stateless core, previous_response_id), streamed or not', body: ResponsesRequest, tags: ['OpenAI'] } }, generating('Responses', handleResponses));
    routes.post('/v1/embeddings', { schema: { summary: 'Embeddings, on a model served with --runner pooling', body: EmbeddingRequest, tags: ['OpenAI'] } }, serve(handleEmbeddings));
    routes.get<{ Params: { id: string } }>('/v1/responses/:id', { schema: { summary: 'A stored response', tags: ['OpenAI'] } }, async (request) => {
      const stored = context.responses.get(request.params.id);
      if (stored === undefined) throw new ApiError(404, `Response with id '${request.params.id}' not found.`, 'response_id');
      return stored.response;
    });
    routes.post('/tokenize', { schema: { summary: 'Tokenize a text or a conversation', body: TokenizeRequest, tags: ['vLLM'] } }, serve(handleTokenize));
    routes.post('/detokenize', { schema: { summary: 'Detokenize token ids', body: DetokenizeRequest, tags: ['vLLM'] } }, serve(handleDetokenize));

    const health = async (_request: FastifyRequest, reply: FastifyReply) => {
      const state = engine.health();
      return state === 'ready' ? reply.send({}) : reply.code(503).send(errorBody(503, `the engine is ${state}`));
    };
    routes.get('/health', { schema: { summary: 'Ready: 200; engine dead or closed: 503', tags: ['operations'] } }, health);
    // vLLM's (and SageMaker's) liveness probe.
    routes.get('/ping', { schema: { summary: 'As /health', tags: ['operations'] } }, health);
    routes.post('/ping', { schema: { summary: 'As /health', tags: ['operations'] } }, health);
    routes.get('/version', { schema: { tags: ['operations'] } }, async () => ({ version: options.version }));
    routes.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['operations'] } }, async (_request, reply) => {
      const text = await metrics.render(engine.makeStats());
      return reply.type(metrics.contentType).send(text);
    });
    const modelCard = () => ({
      id: servedModelName,
      object: 'model',
      created,
      owned_by: 'pagoda',
      root: engine.context.modelDir,
      parent: null,
      max_model_len: engine.context.options.maxModelLen,
    });
    routes.get('/v1/models', { schema: { tags: ['OpenAI'] } }, async () => ({ object: 'list', data: [modelCard()] }));
    // A wildcard, so that a served name with a slash (`Qwen/Qwen3-0.6B`) matches, encoded or not.
    routes.get<{ Params: { '*': string } }>('/v1/models/*', { schema: { summary: 'One served model', tags: ['OpenAI'] } }, async (request) => {
      const model = decodeURIComponent(request.params['*']);
      if (model !== servedModelName) throw new ApiError(404, `The model \`${model}\` does not exist.`, 'model');
      return modelCard();
    });
    routes.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  });

  return {
    app,
    get httpServer() {
      return app.server;
    },
    metrics,
    get numInFlight() {
      return inFlight.size;
    },
    async listen(port, host = '127.0.0.1') {
      loopbackOnly = isLoopbackAddress(host);
      await app.listen({ port, host });
      return app.server.address() as AddressInfo;
    },
    async close(drainTimeoutMs = 30_000) {
      const closing = app.close();
      let cut = 0;
      if (inFlight.size > 0) {
        // Each connection whose last request finishes is closed at once, not left to its keep-alive timeout.
        const allDrained = new Promise<void>((resolve) => (drained = resolve)).then(() => app.server.closeIdleConnections());
        const deadline = new Promise<'deadline'>((resolve) => setTimeout(() => resolve('deadline'), drainTimeoutMs).unref());
        if ((await Promise.race([allDrained, deadline])) === 'deadline') {
          cut = inFlight.size;
          for (const stop of inFlight) stop.abort(shutdownReason);
          // The cut requests end their streams at once; give their last bytes a moment, then close what is left.
          await Promise.race([allDrained, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
          app.server.closeAllConnections();
        }
      }
      await closing;
      return { cut };
    },
  };
}

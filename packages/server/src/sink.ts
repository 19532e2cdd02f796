import type { FastifyReply } from 'fastify';

/** Where a handler's results go: a whole JSON body, or a stream of SSE events. */
export interface ResponseSink {
  json(status: number, body: unknown): void;
  /** Starts the event stream (once), then writes one `data:` event. */
  event(body: unknown): void;
  /** Ends the event stream with `data: [DONE]`. */
  done(): void;
  /** Writes one named event (`event: <name>` then its `data:`), as the Responses API streams them. */
  namedEvent(name: string, body: unknown): void;
  /** Ends the event stream without `[DONE]` (the Responses API's streams end with their last event). */
  end(): void;
  /** Aborted when the client goes away before the response ended, or when the server cuts the request at shutdown. */
  readonly signal: AbortSignal;
  /** Whether the event stream has begun (its status and headers are sent). */
  readonly started: boolean;
  /** Whether nothing more can reach the client. */
  readonly isClosed: boolean;
}

/**
 * A sink over a fastify reply. JSON goes through `reply.send`; an event stream takes the socket over
 * (`reply.hijack`), carrying the headers hooks set (CORS, the request id) onto the raw response.
 */
export function replySink(reply: FastifyReply, stop: AbortController): ResponseSink {
  let started = false;
  let closed = false;
  const raw = reply.raw;
  raw.on('close', () => {
    closed = true;
    // The client went away before the response ended: whatever runs for it is aborted.
    if (!raw.writableFinished) stop.abort(new Error('the client closed the connection'));
  });
  const start = () => {
    if (started) return;
    started = true;
    reply.hijack();
    raw.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
  };
  return {
    get started() {
      return started;
    },
    get isClosed() {
      return closed || raw.destroyed;
    },
    signal: stop.signal,
    json(status, body) {
      if (started || reply.sent || raw.destroyed) return;
      void reply.code(status).send(body);
    },
    event(body) {
      if (closed || raw.destroyed) return;
      start();
      raw.write(`data: ${JSON.stringify(body)}\n\n`);
    },
    done() {
      if (closed || raw.destroyed) return;
      start();
      raw.end('data: [DONE]\n\n');
    },
    namedEvent(name, body) {
      if (closed || raw.destroyed) return;
      start();
      raw.write(`event: ${name}\ndata: ${JSON.stringify(body)}\n\n`);
    },
    end() {
      if (closed || raw.destroyed) return;
      start();
      raw.end();
    },
  };
}

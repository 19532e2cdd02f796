import type { ModelConfig } from '@pagoda/engine';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorBody } from './http-error';

export interface PagodaServerOptions {
  /** The model name clients send (`model`) and `/v1/models` lists. */
  servedModelName: string;
  /** The served model's configuration, for `/v1/models` (`max_model_len`). */
  modelConfig: ModelConfig;
  /** Reported by `GET /version`. */
  version: string;
  /** Maximum context length; defaults to the model's `max_position_embeddings`. */
  maxModelLen?: number;
}

export interface PagodaServer {
  /** The underlying Node.js HTTP server. */
  readonly httpServer: Server;
  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host?: string): Promise<AddressInfo>;
  /** Stops accepting connections and resolves once open ones have ended. */
  close(): Promise<void>;
}

/** Routes whose handlers arrive with the engine core; until then they answer 501 and say so. */
const generationRoutes = new Set(['/v1/completions', '/v1/chat/completions', '/tokenize', '/detokenize']);

/** Creates the OpenAI-compatible HTTP server. */
export function createPagodaServer(options: PagodaServerOptions): PagodaServer {
  const created = Math.floor(Date.now() / 1000);
  const maxModelLen = options.maxModelLen ?? options.modelConfig.maxPositionEmbeddings;

  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const method = request.method ?? 'GET';
    request.resume();

    if (method === 'GET' && path === '/health') return sendJson(response, 200, {});
    if (method === 'GET' && path === '/version') return sendJson(response, 200, { version: options.version });
    if (method === 'GET' && path === '/v1/models') {
      return sendJson(response, 200, {
        object: 'list',
        data: [
          {
            id: options.servedModelName,
            object: 'model',
            created,
            owned_by: 'pagoda',
            root: options.servedModelName,
            max_model_len: maxModelLen,
          },
        ],
      });
    }
    if (generationRoutes.has(path)) {
      if (method !== 'POST') return sendJson(response, 405, errorBody(405, `${path} accepts POST, got ${method}`));
      return sendJson(
        response,
        501,
        errorBody(501, `${path} is not implemented yet: this build of Pagoda has no engine core`),
      );
    }
    sendJson(response, 404, errorBody(404, `no route for ${method} ${path}`));
  };

  const httpServer = createServer((request, response) => {
    try {
      handle(request, response);
    } catch (error) {
      if (!response.headersSent) sendJson(response, 500, errorBody(500, (error as Error).message));
      else response.destroy();
    }
  });

  return {
    httpServer,
    listen(port, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(port, host, () => {
          httpServer.off('error', reject);
          resolve(httpServer.address() as AddressInfo);
        });
      });
    },
    close() {
      return new Promise((resolve, reject) => {
        httpServer.close((error) => (error ? reject(error) : resolve()));
        httpServer.closeIdleConnections();
      });
    },
  };
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  response.end(payload);
}

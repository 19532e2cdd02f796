import { loadModelConfig } from '@pagoda/engine';
import { createPagodaServer, type PagodaServer } from '@pagoda/server';
import { basename, resolve } from 'node:path';
import type { ServeOptions } from './args';

export interface RunningServer {
  server: PagodaServer;
  url: string;
  servedModelName: string;
}

/** Loads the model's configuration and starts the HTTP server. */
export async function serve(options: ServeOptions, version: string, log: (line: string) => void): Promise<RunningServer> {
  const modelDir = resolve(options.model);
  const modelConfig = await loadModelConfig(modelDir);
  const servedModelName = options.servedModelName ?? basename(modelDir);
  const server = createPagodaServer({ servedModelName, modelConfig, version });
  const address = await server.listen(options.port, options.host);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  log(`pagoda ${version}: model ${servedModelName} (${modelConfig.architecture}, ${modelConfig.numLayers} layers) from ${modelDir}`);
  log(`listening on ${url}: GET /health, /version, /v1/models`);
  log('text generation (/v1/completions, /v1/chat/completions) is not implemented yet; those routes answer 501');
  return { server, url, servedModelName };
}

import { AsyncLLM, formatBytes } from '@pagoda/engine';
import { createPagodaServer, type PagodaServer, type PagodaServerOptions } from '@pagoda/server';
import { basename, resolve } from 'node:path';
import type { Logger } from 'pino';
import { readChatTemplateOption, type ServeOptions } from './args';

export interface RunningServer {
  server: PagodaServer;
  engine: AsyncLLM;
  url: string;
  servedModelName: string;
  /**
   * Stops accepting, drains in-flight requests (cutting those still running after `--timeout-graceful-shutdown`),
   * frees the engine; resolves with how many requests were cut.
   */
  stop(): Promise<{ cut: number }>;
}

/**
 * Loads the model, logs the KV cache plan, starts the HTTP server and the periodic statistics line. `log` takes the
 * start-up and statistics lines; `logger`, when given, takes the server's structured request logs.
 */
export async function serve(
  options: ServeOptions,
  version: string,
  log: (line: string) => void,
  statsIntervalMs = 5000,
  logger?: Logger,
): Promise<RunningServer> {
  const modelDir = resolve(options.model);
  const chatTemplate = readChatTemplateOption(options.chatTemplate);
  const engine = await AsyncLLM.create(modelDir, options.engine);
  const { modelConfig, options: engineOptions } = engine.context;
  const plan = engineOptions.kvCache!;
  const servedModelName = options.servedModelName ?? basename(modelDir);
  const runner = engineOptions.modelRunner === 'paged-reference' ? ' (paged reference runner)' : '';
  log(
    `pagoda ${version}: ${servedModelName} (${modelConfig.architecture}, ${modelConfig.numLayers} layers) from ${modelDir} ` +
      `on ${engineOptions.device}${runner}, ${engineOptions.dtype}`,
  );
  for (const line of engine.startupLog) log(line);
  log(
    `KV cache: ${plan.numBlocks} blocks of ${plan.blockSize} tokens (${formatBytes(plan.kvCacheBytes)}), ${plan.maxTokens} tokens; ` +
      `maximum concurrency for ${plan.maxModelLen}-token requests: ${plan.maxConcurrency.toFixed(2)}x`,
  );
  log(
    `tokenizer pool: ${engineOptions.tokenizerPoolSize} worker processes, ${engineOptions.tokenizerPoolTimeoutMs / 1000} s per task; ` +
      `request chat templates ${options.trustRequestChatTemplate ? 'allowed (--trust-request-chat-template)' : 'refused'}`,
  );
  const server = createPagodaServer({
    engine,
    servedModelName,
    version,
    apiKey: options.apiKey,
    allowedOrigins: options.allowedOrigins,
    allowedMethods: options.allowedMethods,
    allowedHeaders: options.allowedHeaders,
    allowCredentials: options.allowCredentials,
    maxWaitingRequests: options.maxWaitingRequests,
    chatTemplate,
    trustRequestChatTemplate: options.trustRequestChatTemplate,
    keepAliveTimeoutMs: Math.round(options.timeoutKeepAlive * 1000),
    maxConnections: options.limitConcurrency,
    toolCallParser: options.toolCallParser as PagodaServerOptions['toolCallParser'],
    enableAutoToolChoice: options.enableAutoToolChoice,
    reasoningParser: options.reasoningParser as PagodaServerOptions['reasoningParser'],
    vllmCompatibleMetrics: options.vllmCompatibleMetrics,
    ...(logger === undefined ? {} : { logger }),
  });
  const address = await server.listen(options.port, options.host);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  const openAiRoutes = engine.context.options.runner === 'pooling' ? '/v1/embeddings' : '/v1/completions, /v1/chat/completions, /v1/responses';
  log(`listening on ${url} (OpenAI-compatible: ${openAiRoutes}, /v1/models; /health, /metrics, /docs)`);

  let last = { time: performance.now(), prompt: 0, generation: 0, queries: 0, hits: 0 };
  const timer = setInterval(() => {
    const stats = engine.makeStats();
    const totals = server.metrics.totals();
    const now = performance.now();
    const seconds = (now - last.time) / 1000;
    const busy = stats.numRunningRequests + stats.numWaitingRequests > 0 || totals.generationTokens > last.generation;
    if (busy) {
      const queries = stats.prefixCacheQueries - last.queries;
      const hits = stats.prefixCacheHits - last.hits;
      log(
        `prompt ${((totals.promptTokens - last.prompt) / seconds).toFixed(1)} tok/s, generation ${((totals.generationTokens - last.generation) / seconds).toFixed(1)} tok/s, ` +
          `running ${stats.numRunningRequests}, waiting ${stats.numWaitingRequests}, KV usage ${(stats.kvCacheUsage * 100).toFixed(1)}%, ` +
          `prefix-cache hit rate ${queries > 0 ? ((hits / queries) * 100).toFixed(1) : '0.0'}%`,
      );
    }
    last = { time: now, prompt: totals.promptTokens, generation: totals.generationTokens, queries: stats.prefixCacheQueries, hits: stats.prefixCacheHits };
  }, statsIntervalMs);
  timer.unref();

  return {
    server,
    engine,
    url,
    servedModelName,
    async stop() {
      clearInterval(timer);
      const drained = await server.close(Math.round(options.timeoutGracefulShutdown * 1000));
      await engine.close();
      return drained;
    },
  };
}

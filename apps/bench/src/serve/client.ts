import type { BenchmarkRequest } from './datasets';
import { parseServerSentEvents } from './sse';

/** What one request measured; times in seconds (`startTime` from the benchmark's start, the rest from the send). */
export interface RequestResult {
  readonly success: boolean;
  readonly promptLength: number;
  /** `usage.completion_tokens` from the server, when it sent usage. */
  readonly outputTokens: number | undefined;
  /** Chunks that carried a choice: one a token for servers that stream token by token. */
  readonly chunkCount: number;
  readonly generatedText: string;
  readonly startTime: number;
  /** Time to the first chunk with a choice. */
  readonly ttft: number;
  /** Gaps between consecutive chunks after the first. */
  readonly itl: readonly number[];
  /** From the send to the last chunk with a choice. */
  readonly latency: number;
  readonly error: string;
}

export interface CompletionClientOptions {
  /** `http://host:port`, without the endpoint path. */
  readonly baseUrl: string;
  readonly endpoint: string;
  readonly model: string;
  readonly ignoreEos: boolean;
  /** Extra body fields merged into every request (`--extra-body`), e.g. `{"temperature": 0.7}`. */
  readonly extraBody?: Readonly<Record<string, unknown>>;
  readonly fetch?: typeof fetch;
  /** Seconds on a monotonic clock. */
  readonly now?: () => number;
}

export const monotonicSeconds = (): number => performance.now() / 1000;

/**
 * Sends one streaming completion and times it as `vllm bench serve` does: greedy (temperature 0), `max_tokens` the
 * request's output length, usage requested in the final chunk; TTFT at the first chunk carrying a choice, an
 * inter-token latency for each later one. A non-200 answer, a stream without any choice or a broken connection is a
 * failed request with its error, not an exception.
 */
export async function sendCompletionRequest(
  request: BenchmarkRequest,
  options: CompletionClientOptions,
  benchmarkStart = 0,
): Promise<RequestResult> {
  const now = options.now ?? monotonicSeconds;
  const fetchFunction = options.fetch ?? fetch;
  const body = {
    model: options.model,
    prompt: request.prompt,
    temperature: 0,
    max_tokens: request.expectedOutputLength,
    stream: true,
    stream_options: { include_usage: true },
    ...(options.ignoreEos ? { ignore_eos: true } : {}),
    ...options.extraBody,
  };
  const start = now();
  let generatedText = '';
  let ttft = 0;
  let lastChunkTime = start;
  let chunkCount = 0;
  let outputTokens: number | undefined;
  const itl: number[] = [];
  const result = (success: boolean, error: string): RequestResult => ({
    success,
    promptLength: request.promptLength,
    outputTokens,
    chunkCount,
    generatedText,
    startTime: start - benchmarkStart,
    ttft,
    itl,
    latency: lastChunkTime - start,
    error,
  });
  try {
    const response = await fetchFunction(`${options.baseUrl.replace(/\/+$/, '')}${options.endpoint}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(body),
    });
    if (!response.ok || response.body === null) {
      const text = await response.text().catch(() => '');
      return result(false, `HTTP ${response.status} ${response.statusText}${text === '' ? '' : `: ${text.slice(0, 500)}`}`);
    }
    for await (const data of parseServerSentEvents(response.body)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data) as {
        choices?: Array<{ text?: string | null }>;
        usage?: { completion_tokens?: number } | null;
        error?: { message?: string };
      };
      if (chunk.error !== undefined) return result(false, `server error in stream: ${chunk.error.message ?? JSON.stringify(chunk.error)}`);
      const choice = chunk.choices?.[0];
      if (choice !== undefined) {
        const time = now();
        if (chunkCount === 0) ttft = time - start;
        else itl.push(time - lastChunkTime);
        lastChunkTime = time;
        chunkCount++;
        generatedText += choice.text ?? '';
      }
      if (typeof chunk.usage?.completion_tokens === 'number') outputTokens = chunk.usage.completion_tokens;
    }
  } catch (error) {
    return result(false, error instanceof Error ? `${error.name}: ${error.message}` : String(error));
  }
  return chunkCount > 0 ? result(true, '') : result(false, 'the stream ended without a chunk carrying a choice (no TTFT)');
}

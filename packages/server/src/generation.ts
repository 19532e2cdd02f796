import { accumulate, type AsyncLLM, type NormalizedSamplingParams, type RequestOutput, resolveSamplingParams } from '@pagoda/engine';
import { ApiError } from './http-error';
import type { PagodaMetrics } from './pagoda-metrics';
import type { ReasoningParserName } from './parsers';
import type { ToolSettings } from './tool-calls';
import type { GenerationFields } from './protocol';
import { renameConstraintParam } from './structured-output-fields';
import type { ResponseSink } from './sink';

/** The engine surface the server uses (an `AsyncLLM`, or anything shaped like it). */
export type ServedEngine = Pick<
  AsyncLLM,
  'generate' | 'embed' | 'abort' | 'health' | 'makeStats' | 'context' | 'encode' | 'encodeAll' | 'applyChatTemplate' | 'decode'
>;

/**
 * Sequences waiting for their first token, against `--max-waiting-requests`: a request with n = 64 counts 64, so
 * one request cannot queue past the limit.
 */
export class Admission {
  private waiting = 0;

  constructor(readonly maxWaitingSequences: number | undefined) {}

  get numWaiting(): number {
    return this.waiting;
  }

  /** Counts `sequences` as waiting, or refuses them with a 429 that says when to retry. */
  admit(sequences: number): void {
    const limit = this.maxWaitingSequences;
    if (limit !== undefined && this.waiting + sequences > limit) {
      throw new ApiError(
        429,
        `The server is overloaded: ${this.waiting} sequences are waiting and this request adds ${sequences} (limit ${limit}). Retry later.`,
        null,
        { 'retry-after': '1' },
      );
    }
    this.waiting += sequences;
  }

  release(sequences: number): void {
    this.waiting -= sequences;
  }
}

export interface HandlerContext {
  readonly engine: ServedEngine;
  readonly servedModelName: string;
  /** The server's chat template (`--chat-template`), replacing the model's. */
  readonly chatTemplate: string | undefined;
  /** Whether a request may bring its own `chat_template` (vLLM's `--trust-request-chat-template`). */
  readonly trustRequestChatTemplate: boolean;
  readonly metrics: PagodaMetrics;
  readonly admission: Admission;
  /** `--tool-call-parser` (or the chat template's format) and `--enable-auto-tool-choice`. */
  readonly tools: ToolSettings;
  /** `--reasoning-parser`: the text between `<think>` and `</think>` is `reasoning_content`. */
  readonly reasoningParser: ReasoningParserName | undefined;
}

export interface StartedRequest {
  readonly requestId: string;
  readonly stream: AsyncIterableIterator<RequestOutput>;
}

/**
 * Counts a request's `sequences` as waiting (or refuses it with a 429) while `start` tokenizes and starts them; if
 * that fails they stop counting. Once started, {@link drive} releases them as each request makes its first token.
 */
export async function admitted<T>(context: HandlerContext, sequences: number, start: () => Promise<T>): Promise<T> {
  context.admission.admit(sequences);
  try {
    return await start();
  } catch (error) {
    context.admission.release(sequences);
    throw error;
  }
}

/** Refuses a request for a model this server does not serve. */
export function checkModel(context: HandlerContext, model: string | null | undefined): void {
  if (model !== undefined && model !== null && model !== context.servedModelName) {
    throw new ApiError(404, `The model \`${model}\` does not exist.`, 'model');
  }
}

/**
 * An engine error named as the client named the field: chat's `max_completion_tokens` for `max_tokens`, its
 * `messages` for the prompt they render to, and the constraint's own field (`response_format`, `guided_json`).
 */
export function renameParam(error: unknown, fields: GenerationFields, promptParam: 'prompt' | 'messages'): unknown {
  const param = (error as { param?: unknown }).param;
  if (!(error instanceof Error)) return error;
  if (typeof param === 'string' && param.startsWith('structured_outputs')) return renameConstraintParam(error, fields.constraint);
  if (param === 'max_tokens' && fields.maxTokensParam !== 'max_tokens') {
    return new ApiError(400, error.message.replace(/\bmax_tokens\b/g, fields.maxTokensParam), fields.maxTokensParam);
  }
  if (param === 'prompt' && promptParam === 'messages') return new ApiError(400, error.message.replace(/\bprompt\b/, 'rendered messages'), 'messages');
  return error;
}

/**
 * Checks the sampling fields before anything is tokenized or queued (ranges, n, logprobs against the server's
 * limit), with a token limit standing in for the one the prompt's length will give when none is set.
 */
export function checkSamplingFields(context: HandlerContext, fields: GenerationFields): NormalizedSamplingParams {
  const engineContext = context.engine.context;
  try {
    return resolveSamplingParams(engineContext, { ...fields.samplingParams, maxTokens: fields.maxTokens ?? engineContext.options.maxModelLen });
  } catch (error) {
    throw renameParam(error, fields, 'prompt');
  }
}

/**
 * Starts one engine request per tokenized prompt; on a refusal, aborts the ones already started. Token ids only:
 * text was tokenized in the engine's tokenizer pool before.
 */
export function startRequests(
  context: HandlerContext,
  prompts: readonly (readonly number[])[],
  fields: GenerationFields,
  idPrefix: string,
  promptParam: 'prompt' | 'messages' = 'prompt',
): StartedRequest[] {
  const { engine } = context;
  const maxModelLen = engine.context.options.maxModelLen;
  const started: StartedRequest[] = [];
  try {
    prompts.forEach((tokenIds, index) => {
      if (tokenIds.length >= maxModelLen) {
        throw new ApiError(
          400,
          `This model's maximum context length is ${maxModelLen} tokens. However, your ${promptParam === 'messages' ? 'messages render to' : 'prompt has'} ${tokenIds.length} tokens, leaving no room for a completion. Please reduce the length of the ${promptParam}.`,
          promptParam,
        );
      }
      const requestId = `${idPrefix}-${index}`;
      // As vLLM's server: without max_tokens, a request may fill the rest of the context.
      const maxTokens = fields.maxTokens ?? maxModelLen - tokenIds.length;
      const stream = engine.generate({
        requestId,
        prompt: tokenIds,
        samplingParams: { ...fields.samplingParams, maxTokens },
        ...(fields.priority === undefined ? {} : { priority: fields.priority }),
        ...(fields.cacheSalt === undefined ? {} : { cacheSalt: fields.cacheSalt }),
      });
      started.push({ requestId, stream });
    });
  } catch (error) {
    for (const request of started) engine.abort(request.requestId);
    throw renameParam(error, fields, promptParam);
  }
  return started;
}

/**
 * Runs the started requests, feeding each delta to `onDelta`; aborts them all if the sink's signal fires (the
 * client left, or the server is cutting requests at shutdown). Each request's n sequences count as waiting until
 * it produces its first token.
 */
export async function drive(
  context: HandlerContext,
  sink: ResponseSink,
  requests: readonly StartedRequest[],
  sequencesPerRequest: number,
  onDelta: (promptIndex: number, delta: RequestOutput) => void,
  fields?: GenerationFields,
  promptParam: 'prompt' | 'messages' = 'prompt',
): Promise<RequestOutput[]> {
  const finals: Array<RequestOutput | undefined> = requests.map(() => undefined);
  const firstSeen = requests.map(() => false);
  const markRunning = (index: number) => {
    if (!firstSeen[index]) {
      firstSeen[index] = true;
      context.admission.release(sequencesPerRequest);
    }
  };
  const abortAll = () => {
    for (const request of requests) context.engine.abort(request.requestId);
  };
  if (sink.signal.aborted) abortAll();
  sink.signal.addEventListener('abort', abortAll, { once: true });
  try {
    await Promise.all(
      requests.map(async (request, index) => {
        for await (const delta of request.stream) {
          markRunning(index);
          finals[index] = accumulate(finals[index], delta);
          context.metrics.recordGenerated(delta.outputs.reduce((sum, output) => sum + output.tokenIds.length, 0));
          if (delta.finished) context.metrics.recordFinished(finals[index]!);
          if (!sink.isClosed) onDelta(index, delta);
        }
      }),
    );
  } catch (error) {
    abortAll();
    throw fields === undefined ? error : renameParam(error, fields, promptParam);
  } finally {
    sink.signal.removeEventListener('abort', abortAll);
    requests.forEach((_, index) => markRunning(index));
  }
  return finals.map((output) => output!);
}

export function usageOf(finals: readonly RequestOutput[]) {
  const promptTokens = finals.reduce((sum, output) => sum + output.promptTokenIds.length, 0);
  const completionTokens = finals.reduce(
    (sum, output) => sum + output.outputs.reduce((inner, completion) => inner + completion.tokenIds.length, 0),
    0,
  );
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

export const now = () => Math.floor(Date.now() / 1000);

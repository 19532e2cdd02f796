import { accumulate, type AsyncLLM, type CompletionOutput, renderChat, type RequestOutput, type SampledTokenLogprobs } from '@pagoda/engine';
import { randomUUID } from 'node:crypto';
import { ApiError } from './http-error';
import {
  type Body,
  type ChatMessageInput,
  type GenerationFields,
  optionalBoolean,
  optionalObject,
  optionalString,
  readGenerationFields,
  readMessages,
  readPrompts,
} from './protocol';

/** The engine surface the server uses (an `AsyncLLM`, or anything shaped like it). */
export type ServedEngine = Pick<AsyncLLM, 'generate' | 'abort' | 'health' | 'makeStats' | 'context'>;

/** Where a handler's results go: a whole JSON body, or a stream of SSE events. */
export interface ResponseSink {
  json(status: number, body: unknown): void;
  /** Starts the event stream (once), then writes one `data:` event. */
  event(body: unknown): void;
  /** Ends the event stream with `data: [DONE]`. */
  done(): void;
  /** Resolves when the client goes away before the response ended. */
  readonly closed: Promise<void>;
  readonly isClosed: boolean;
}

export interface HandlerContext {
  readonly engine: ServedEngine;
  readonly servedModelName: string;
  readonly chatTemplate: string | undefined;
  /** Called for every request that finishes (for metrics) and every batch of new tokens. */
  onFinished(output: RequestOutput): void;
  onTokens(count: number): void;
  /** Counts requests that have not produced their first token yet (the server's waiting queue). */
  waiting: { count: number };
}

interface PreparedPrompt {
  readonly promptText: string | undefined;
  readonly tokenIds: number[];
}

/** Starts one engine request per prompt; on a refusal, aborts the ones already started. */
function startRequests(context: HandlerContext, prompts: readonly PreparedPrompt[], fields: GenerationFields, idPrefix: string) {
  const { engine } = context;
  const maxModelLen = engine.context.options.maxModelLen;
  const started: Array<{ requestId: string; stream: AsyncIterableIterator<RequestOutput> }> = [];
  try {
    prompts.forEach((prompt, index) => {
      if (prompt.tokenIds.length >= maxModelLen) {
        throw new ApiError(
          400,
          `This model's maximum context length is ${maxModelLen} tokens. However, your prompt has ${prompt.tokenIds.length} tokens, leaving no room for a completion. Please reduce the length of the prompt.`,
          'prompt',
        );
      }
      const requestId = `${idPrefix}-${index}`;
      // As vLLM's server: without max_tokens, a request may fill the rest of the context.
      const maxTokens = fields.maxTokens ?? maxModelLen - prompt.tokenIds.length;
      const stream = engine.generate({
        requestId,
        prompt: prompt.tokenIds,
        samplingParams: { ...fields.samplingParams, maxTokens },
        ...(fields.priority === undefined ? {} : { priority: fields.priority }),
      });
      started.push({ requestId, stream });
    });
  } catch (error) {
    for (const request of started) engine.abort(request.requestId);
    throw error;
  }
  return started;
}

/** Runs the started requests, feeding each delta to `onDelta`; aborts them all if the client leaves. */
async function drive(
  context: HandlerContext,
  sink: ResponseSink,
  requests: Array<{ requestId: string; stream: AsyncIterableIterator<RequestOutput> }>,
  onDelta: (promptIndex: number, delta: RequestOutput) => void,
): Promise<RequestOutput[]> {
  const finals: Array<RequestOutput | undefined> = requests.map(() => undefined);
  context.waiting.count += requests.length;
  const firstSeen = requests.map(() => false);
  const markRunning = (index: number) => {
    if (!firstSeen[index]) {
      firstSeen[index] = true;
      context.waiting.count -= 1;
    }
  };
  void sink.closed.then(() => {
    for (const request of requests) context.engine.abort(request.requestId);
  });
  try {
    await Promise.all(
      requests.map(async (request, index) => {
        for await (const delta of request.stream) {
          markRunning(index);
          finals[index] = accumulate(finals[index], delta);
          context.onTokens(delta.outputs.reduce((sum, output) => sum + output.tokenIds.length, 0));
          if (delta.finished) context.onFinished(finals[index]!);
          if (!sink.isClosed) onDelta(index, delta);
        }
      }),
    );
  } finally {
    requests.forEach((_, index) => markRunning(index));
  }
  return finals.map((output) => output!);
}

function usageOf(finals: readonly RequestOutput[]) {
  const promptTokens = finals.reduce((sum, output) => sum + output.promptTokenIds.length, 0);
  const completionTokens = finals.reduce(
    (sum, output) => sum + output.outputs.reduce((inner, completion) => inner + completion.tokenIds.length, 0),
    0,
  );
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

function checkModel(context: HandlerContext, body: Body): void {
  const model = optionalString(body, 'model');
  if (model !== undefined && model !== context.servedModelName) {
    throw new ApiError(404, `The model \`${model}\` does not exist.`, 'model');
  }
}

const now = () => Math.floor(Date.now() / 1000);

/** POST /v1/completions */
export async function handleCompletions(context: HandlerContext, body: Body, sink: ResponseSink): Promise<void> {
  checkModel(context, body);
  if (body.suffix !== undefined && body.suffix !== null) throw new ApiError(400, 'suffix is not supported', 'suffix');
  const fields = readGenerationFields(body, { chat: false });
  const echo = optionalBoolean(body, 'echo') ?? false;
  const { tokenizer } = context.engine.context;
  const prompts: PreparedPrompt[] = readPrompts(body).map((prompt) =>
    typeof prompt === 'string' ? { promptText: prompt, tokenIds: tokenizer.encode(prompt) } : { promptText: undefined, tokenIds: prompt },
  );
  const id = `cmpl-${randomUUID().replace(/-/g, '')}`;
  const created = now();
  const requests = startRequests(context, prompts, fields, id);
  const n = fields.samplingParams.n ?? 1;
  const echoText = (index: number) => (echo ? (prompts[index]!.promptText ?? tokenizer.decode(prompts[index]!.tokenIds)) : '');
  const offsets = prompts.map(() => new Map<number, number>());
  const legacyLogprobs = (index: number, completion: CompletionOutput) => {
    if (completion.logprobs === undefined) return null;
    const start = offsets[index]!.get(completion.index) ?? 0;
    const result = completionLogprobs(tokenizer, completion.logprobs, start);
    offsets[index]!.set(completion.index, result.end);
    return result.logprobs;
  };

  if (!fields.stream) {
    const finals = await drive(context, sink, requests, () => undefined);
    if (sink.isClosed) return;
    sink.json(200, {
      id,
      object: 'text_completion',
      created,
      model: context.servedModelName,
      choices: finals.flatMap((output, index) =>
        output.outputs.map((completion) => ({
          index: index * n + completion.index,
          text: echoText(index) + completion.text,
          logprobs: legacyLogprobs(index, completion),
          finish_reason: completion.finishReason ?? null,
          stop_reason: completion.stopReason ?? null,
        })),
      ),
      usage: usageOf(finals),
    });
    return;
  }

  const echoed = prompts.map(() => new Set<number>());
  const finals = await drive(context, sink, requests, (index, delta) => {
    for (const completion of delta.outputs) {
      let text = completion.text;
      if (echo && !echoed[index]!.has(completion.index)) {
        echoed[index]!.add(completion.index);
        text = echoText(index) + text;
      }
      sink.event({
        id,
        object: 'text_completion',
        created,
        model: context.servedModelName,
        choices: [
          {
            index: index * n + completion.index,
            text,
            logprobs: legacyLogprobs(index, completion),
            finish_reason: completion.finishReason ?? null,
            stop_reason: completion.stopReason ?? null,
          },
        ],
      });
    }
  });
  if (fields.includeUsage && !sink.isClosed) {
    sink.event({ id, object: 'text_completion', created, model: context.servedModelName, choices: [], usage: usageOf(finals) });
  }
  sink.done();
}

/** POST /v1/chat/completions */
export async function handleChatCompletions(context: HandlerContext, body: Body, sink: ResponseSink): Promise<void> {
  checkModel(context, body);
  const messages: ChatMessageInput[] = readMessages(body);
  const fields = readGenerationFields(body, { chat: true });
  const addGenerationPrompt = optionalBoolean(body, 'add_generation_prompt') ?? true;
  const templateKwargs = optionalObject(body, 'chat_template_kwargs');
  const tools = body.tools;
  if (tools !== undefined && tools !== null && !Array.isArray(tools)) throw new ApiError(400, 'tools must be an array', 'tools');
  const chatTemplate = optionalString(body, 'chat_template') ?? context.chatTemplate;
  const engineContext = context.engine.context;
  let promptText: string;
  try {
    promptText = renderChat(engineContext, messages, {
      addGenerationPrompt,
      ...(templateKwargs === undefined ? {} : { templateKwargs: { ...templateKwargs } }),
      ...(Array.isArray(tools) ? { tools } : {}),
      ...(chatTemplate === undefined ? {} : { chatTemplate }),
    });
  } catch (error) {
    throw new ApiError(400, (error as Error).message, 'messages');
  }
  const tokenIds = engineContext.tokenizer.encode(promptText, { addSpecialTokens: false });
  const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
  const created = now();
  const [request] = startRequests(context, [{ promptText, tokenIds }], fields, id);
  const wantLogprobs = fields.samplingParams.logprobs !== undefined && fields.samplingParams.logprobs !== null;
  const toChatLogprobs = (completion: CompletionOutput) =>
    wantLogprobs ? { content: chatLogprobs(engineContext.tokenizer, completion.logprobs ?? []) } : null;

  if (!fields.stream) {
    const [final] = await drive(context, sink, [request!], () => undefined);
    if (sink.isClosed) return;
    sink.json(200, {
      id,
      object: 'chat.completion',
      created,
      model: context.servedModelName,
      choices: final!.outputs.map((completion) => ({
        index: completion.index,
        message: { role: 'assistant', content: completion.text },
        logprobs: toChatLogprobs(completion),
        finish_reason: completion.finishReason ?? null,
        stop_reason: completion.stopReason ?? null,
      })),
      usage: usageOf([final!]),
    });
    return;
  }

  const chunk = (choices: unknown[]) => ({ id, object: 'chat.completion.chunk', created, model: context.servedModelName, choices });
  const n = fields.samplingParams.n ?? 1;
  for (let index = 0; index < n; index += 1) {
    sink.event(chunk([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
  }
  const [final] = await drive(context, sink, [request!], (_promptIndex, delta) => {
    for (const completion of delta.outputs) {
      sink.event(
        chunk([
          {
            index: completion.index,
            delta: completion.text.length > 0 || completion.finishReason === undefined ? { content: completion.text } : {},
            logprobs: toChatLogprobs(completion),
            finish_reason: completion.finishReason ?? null,
            stop_reason: completion.stopReason ?? null,
          },
        ]),
      );
    }
  });
  if (fields.includeUsage && !sink.isClosed) sink.event({ ...chunk([]), usage: usageOf([final!]) });
  sink.done();
}

type Tokenizer = ServedEngine['context']['tokenizer'];

/** The text of one token as the API shows it. */
function tokenText(tokenizer: Tokenizer, tokenId: number): string {
  return tokenizer.decode([tokenId], { skipSpecialTokens: false });
}

/** The legacy completions format: tokens, token_logprobs, top_logprobs (dicts) and text offsets. */
function completionLogprobs(tokenizer: Tokenizer, logprobs: readonly SampledTokenLogprobs[], startOffset: number) {
  let offset = startOffset;
  const result = { tokens: [] as string[], token_logprobs: [] as number[], top_logprobs: [] as Array<Record<string, number>>, text_offset: [] as number[] };
  for (const entry of logprobs) {
    const text = tokenText(tokenizer, entry.tokenId);
    result.tokens.push(text);
    result.token_logprobs.push(entry.logprob);
    result.top_logprobs.push(Object.fromEntries(entry.top.map((top) => [tokenText(tokenizer, top.tokenId), top.logprob])));
    result.text_offset.push(offset);
    offset += text.length;
  }
  return { logprobs: result, end: offset };
}

/** The chat format: per token, its text, logprob, UTF-8 bytes and the top alternatives. */
function chatLogprobs(tokenizer: Tokenizer, logprobs: readonly SampledTokenLogprobs[]) {
  const describe = (tokenId: number, logprob: number) => {
    const token = tokenText(tokenizer, tokenId);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')] };
  };
  return logprobs.map((entry) => ({
    ...describe(entry.tokenId, entry.logprob),
    top_logprobs: entry.top.map((top) => describe(top.tokenId, top.logprob)),
  }));
}

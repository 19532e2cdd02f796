import type { ChatMessage as EngineChatMessage, SamplingParams } from '@pagoda/engine';
import { ApiError } from './http-error';
import { readConstraint, type RequestedConstraint } from './structured-output-fields';
import type { ChatCompletionRequest, ChatMessage, CompletionRequest } from './schemas';

/** Most prompts one completions request may carry (each becomes n sequences). */
export const maxPromptsPerRequest = 1024;

const given = <T>(value: T | null | undefined): T | undefined => (value === null ? undefined : value);

function logitBiasOf(value: Readonly<Record<string, number>> | null | undefined): Record<number, number> | undefined {
  if (value === null || value === undefined) return undefined;
  const bias: Record<number, number> = {};
  for (const [key, amount] of Object.entries(value)) {
    if (!/^\d+$/.test(key)) throw new ApiError(400, `logit_bias keys must be token ids, got ${JSON.stringify(key)}`, 'logit_bias');
    bias[Number(key)] = amount;
  }
  return bias;
}

/** What a request body asks of generation, besides its prompt. */
export interface GenerationFields {
  readonly samplingParams: SamplingParams;
  /** `max_tokens` (or chat's `max_completion_tokens`) when given; otherwise the server fills in the rest of the context. */
  readonly maxTokens: number | undefined;
  /** The name the client gave the token limit, for errors about it. */
  readonly maxTokensParam: 'max_tokens' | 'max_completion_tokens';
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly priority: number | undefined;
  /** The output constraint and the field it came in (`response_format`, `structured_outputs`, `guided_json`, …). */
  readonly constraint: RequestedConstraint | undefined;
  /** vLLM's `cache_salt`: the prefix cache is shared only between requests with the same salt. */
  readonly cacheSalt: string | undefined;
}

/**
 * Fields of OpenAI's or vLLM's API that this server knows and does not implement: each is a 400 when given (with
 * a value that would change anything), never silently ignored. Fields nobody defines are ignored, as vLLM does.
 */
const unsupportedFields: ReadonlyArray<readonly [field: string, accepts: (value: unknown) => boolean, why: string]> = [
  ['use_beam_search', (value) => value === false, 'beam search is not supported'],
  ['length_penalty', (value) => value === 1, 'length_penalty applies to beam search, which is not supported'],
  ['truncate_prompt_tokens', () => false, 'prompt truncation is not supported; shorten the prompt'],
  ['allowed_token_ids', () => false, 'allowed_token_ids is not supported; use structured_outputs.choice or logit_bias'],
  ['bad_words', () => false, 'bad_words is not supported; use logit_bias'],
  ['guided_whitespace_pattern', () => false, 'guided_whitespace_pattern is not supported (see --structured-outputs-config)'],
  ['guided_decoding_backend', (value) => value === 'xgrammar' || value === 'auto', 'the only structured-output backend is xgrammar'],
  ['return_tokens_as_token_ids', (value) => value === false, 'return_tokens_as_token_ids is not supported'],
  ['prompt_embeds', () => false, 'prompt embeddings are not supported'],
  ['mm_processor_kwargs', () => false, 'this server serves text models only'],
  ['kv_transfer_params', () => false, 'disaggregated prefill is not supported'],
  ['vllm_xargs', () => false, 'vllm_xargs is not supported'],
  ['continue_final_message', (value) => value === false, 'continue_final_message is not supported'],
  ['documents', () => false, 'documents are not supported; put them in the messages'],
  ['modalities', (value) => Array.isArray(value) && value.every((modality) => modality === 'text'), 'this server answers in text only'],
  ['audio', () => false, 'this server answers in text only'],
  ['prediction', () => false, 'predicted outputs are not supported'],
  ['web_search_options', () => false, 'web search is not supported'],
  ['functions', () => false, 'functions (deprecated) is not supported; use tools'],
  ['function_call', () => false, 'function_call (deprecated) is not supported; use tool_choice'],
];

function refuseUnsupported(body: Readonly<Record<string, unknown>>): void {
  for (const [field, accepts, why] of unsupportedFields) {
    const value = body[field];
    if (value !== undefined && value !== null && !accepts(value)) throw new ApiError(400, `${field}: ${why}`, field);
  }
}

/** Reads the sampling fields every generation endpoint shares (OpenAI's, and vLLM's extras); types are checked. */
export function readGenerationFields(
  body: CompletionRequest | ChatCompletionRequest,
  { chat }: { chat: boolean },
): GenerationFields {
  refuseUnsupported(body as unknown as Readonly<Record<string, unknown>>);
  const chatBody = body as ChatCompletionRequest;
  const maxCompletionTokens = chat ? given(chatBody.max_completion_tokens) : undefined;
  const maxTokens = maxCompletionTokens ?? given(body.max_tokens);
  const stream = given(body.stream) ?? false;
  const streamOptions = given(body.stream_options);
  if (streamOptions !== undefined && !stream) {
    throw new ApiError(400, 'stream_options can only be given when stream is true', 'stream_options');
  }
  let logprobs: number | undefined;
  if (chat) {
    const wanted = given(chatBody.logprobs) ?? false;
    const top = given(chatBody.top_logprobs);
    if (top !== undefined && !wanted) throw new ApiError(400, 'top_logprobs needs logprobs set to true', 'top_logprobs');
    logprobs = wanted ? (top ?? 0) : undefined;
  } else {
    logprobs = given((body as CompletionRequest).logprobs);
  }
  const samplingParams: { -readonly [K in keyof SamplingParams]: SamplingParams[K] } = {
    n: given(body.n),
    temperature: given(body.temperature),
    topP: given(body.top_p),
    topK: given(body.top_k),
    minP: given(body.min_p),
    repetitionPenalty: given(body.repetition_penalty),
    frequencyPenalty: given(body.frequency_penalty),
    presencePenalty: given(body.presence_penalty),
    seed: given(body.seed),
    logitBias: logitBiasOf(body.logit_bias),
    maxTokens,
    minTokens: given(body.min_tokens),
    stop: typeof body.stop === 'string' ? [body.stop] : given(body.stop),
    stopTokenIds: given(body.stop_token_ids),
    ignoreEos: given(body.ignore_eos),
    logprobs,
    includeStopStrInOutput: given(body.include_stop_str_in_output),
    skipSpecialTokens: given(body.skip_special_tokens),
    promptLogprobs: given(body.prompt_logprobs),
  };
  const constraint = readConstraint(body);
  if (constraint !== undefined) samplingParams.structuredOutputs = constraint.structuredOutputs;
  return {
    samplingParams,
    maxTokens,
    maxTokensParam: maxCompletionTokens !== undefined ? 'max_completion_tokens' : 'max_tokens',
    stream,
    includeUsage: given(streamOptions?.include_usage) ?? false,
    priority: given(body.priority),
    constraint,
    cacheSalt: given(body.cache_salt),
  };
}

/** A completion request's prompts: a string, strings, token ids, or lists of token ids. */
export function readPrompts(body: CompletionRequest): Array<string | number[]> {
  const { prompt } = body;
  if (typeof prompt === 'string') return [prompt];
  if (prompt.length === 0) throw new ApiError(400, 'prompt must not be empty', 'prompt');
  if (prompt.length > maxPromptsPerRequest) {
    throw new ApiError(400, `prompt may hold at most ${maxPromptsPerRequest} prompts, got ${prompt.length}`, 'prompt');
  }
  // The schema's union: all strings, all token ids, or all arrays of token ids.
  if (typeof prompt[0] === 'number') return [prompt as number[]];
  return prompt as Array<string | number[]>;
}

/** Chat messages, with array content (text parts) flattened to a string as templates expect. */
export function readMessages(messages: readonly ChatMessage[] | undefined): EngineChatMessage[] {
  if (messages === undefined) throw new ApiError(400, 'messages is required', 'messages');
  if (messages.length === 0) throw new ApiError(400, 'messages must contain at least one message', 'messages');
  return messages.map((message, index) => {
    const { content, ...rest } = message;
    let text: string;
    if (typeof content === 'string') text = content;
    else if (content === null || content === undefined) text = '';
    else {
      text = content
        .map((part, partIndex) => {
          if (part.type !== 'text' || typeof part.text !== 'string') {
            throw new ApiError(400, `messages[${index}].content[${partIndex}] must be a text part ({"type": "text", "text": ...}); this model reads text only`, 'messages');
          }
          return part.text;
        })
        .join('');
    }
    return { ...rest, ...historyToolCalls(rest), content: text } as EngineChatMessage;
  });
}

/**
 * An assistant message's `tool_calls` with each call's `arguments` (OpenAI's JSON text) parsed, as vLLM hands them
 * to chat templates: Qwen's writes `arguments | tojson`, which would quote a string a second time.
 */
function historyToolCalls(message: Readonly<Record<string, unknown>>): { tool_calls?: unknown[] } {
  const calls = message.tool_calls;
  if (!Array.isArray(calls)) return {};
  return {
    tool_calls: calls.map((call: { function?: { arguments?: unknown } }) => {
      const args = call?.function?.arguments;
      if (typeof args !== 'string') return call;
      try {
        return { ...call, function: { ...call.function, arguments: JSON.parse(args) } };
      } catch {
        return call;
      }
    }),
  };
}

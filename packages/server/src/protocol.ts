import type { SamplingParams } from '@pagoda/engine';
import { ApiError } from './http-error';

/** A parsed JSON object body. Readers check each field's type and name it in the error. */
export type Body = Readonly<Record<string, unknown>>;

const typeName = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);

function wrongType(param: string, expected: string, value: unknown): ApiError {
  return new ApiError(400, `${param} must be ${expected}, got ${typeName(value)}`, param);
}

export function optionalBoolean(body: Body, param: string): boolean | undefined {
  const value = body[param];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw wrongType(param, 'a boolean', value);
  return value;
}

export function optionalNumber(body: Body, param: string): number | undefined {
  const value = body[param];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw wrongType(param, 'a number', value);
  return value;
}

export function optionalInteger(body: Body, param: string): number | undefined {
  const value = optionalNumber(body, param);
  if (value !== undefined && !Number.isInteger(value)) throw new ApiError(400, `${param} must be an integer, got ${value}`, param);
  return value;
}

export function optionalString(body: Body, param: string): string | undefined {
  const value = body[param];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw wrongType(param, 'a string', value);
  return value;
}

export function optionalObject(body: Body, param: string): Body | undefined {
  const value = body[param];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw wrongType(param, 'an object', value);
  return value as Body;
}

function optionalIntegerArray(body: Body, param: string): number[] | undefined {
  const value = body[param];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((item) => Number.isInteger(item))) throw wrongType(param, 'an array of integers', value);
  return value as number[];
}

function optionalStop(body: Body): string[] | undefined {
  const value = body.stop;
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value as string[];
  throw wrongType('stop', 'a string or an array of strings', value);
}

function optionalLogitBias(body: Body): Record<number, number> | undefined {
  const value = optionalObject(body, 'logit_bias');
  if (value === undefined) return undefined;
  const bias: Record<number, number> = {};
  for (const [key, amount] of Object.entries(value)) {
    if (!/^\d+$/.test(key)) throw new ApiError(400, `logit_bias keys must be token ids, got ${JSON.stringify(key)}`, 'logit_bias');
    if (typeof amount !== 'number' || !Number.isFinite(amount)) throw wrongType('logit_bias', 'an object of numbers', amount);
    bias[Number(key)] = amount;
  }
  return bias;
}

/** What a request body asks of generation, besides its prompt. */
export interface GenerationFields {
  readonly samplingParams: SamplingParams;
  /** `max_tokens` (or chat's `max_completion_tokens`) when given; otherwise the server fills in the rest of the context. */
  readonly maxTokens: number | undefined;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly priority: number | undefined;
}

/** Reads the sampling fields every generation endpoint shares (OpenAI's, and vLLM's extras). */
export function readGenerationFields(body: Body, { chat }: { chat: boolean }): GenerationFields {
  const maxCompletionTokens = chat ? optionalInteger(body, 'max_completion_tokens') : undefined;
  const maxTokens = maxCompletionTokens ?? optionalInteger(body, 'max_tokens');
  const stream = optionalBoolean(body, 'stream') ?? false;
  const streamOptions = optionalObject(body, 'stream_options');
  if (streamOptions !== undefined && !stream) {
    throw new ApiError(400, 'stream_options can only be given when stream is true', 'stream_options');
  }
  const includeUsage = streamOptions === undefined ? false : (optionalBoolean(streamOptions, 'include_usage') ?? false);
  let logprobs: number | undefined;
  if (chat) {
    const wanted = optionalBoolean(body, 'logprobs') ?? false;
    const top = optionalInteger(body, 'top_logprobs');
    if (top !== undefined && !wanted) throw new ApiError(400, 'top_logprobs needs logprobs set to true', 'top_logprobs');
    logprobs = wanted ? (top ?? 0) : undefined;
  } else {
    logprobs = optionalInteger(body, 'logprobs');
  }
  const samplingParams: SamplingParams = {
    n: optionalInteger(body, 'n'),
    temperature: optionalNumber(body, 'temperature'),
    topP: optionalNumber(body, 'top_p'),
    topK: optionalInteger(body, 'top_k'),
    minP: optionalNumber(body, 'min_p'),
    repetitionPenalty: optionalNumber(body, 'repetition_penalty'),
    frequencyPenalty: optionalNumber(body, 'frequency_penalty'),
    presencePenalty: optionalNumber(body, 'presence_penalty'),
    seed: optionalInteger(body, 'seed'),
    logitBias: optionalLogitBias(body),
    maxTokens,
    minTokens: optionalInteger(body, 'min_tokens'),
    stop: optionalStop(body),
    stopTokenIds: optionalIntegerArray(body, 'stop_token_ids'),
    ignoreEos: optionalBoolean(body, 'ignore_eos'),
    logprobs,
    includeStopStrInOutput: optionalBoolean(body, 'include_stop_str_in_output'),
  };
  return { samplingParams, maxTokens, stream, includeUsage, priority: optionalInteger(body, 'priority') };
}

/** A completion request's prompts: a string, strings, token ids, or lists of token ids. */
export function readPrompts(body: Body): Array<string | number[]> {
  const prompt = body.prompt;
  const invalid = () => wrongType('prompt', 'a string, an array of strings, an array of token ids or an array of such arrays', prompt);
  if (typeof prompt === 'string') return [prompt];
  if (!Array.isArray(prompt) || prompt.length === 0) {
    if (Array.isArray(prompt)) throw new ApiError(400, 'prompt must not be empty', 'prompt');
    throw invalid();
  }
  if (prompt.every((item) => typeof item === 'string')) return prompt as string[];
  if (prompt.every((item) => Number.isInteger(item))) return [prompt as number[]];
  if (prompt.every((item) => Array.isArray(item) && item.every((token) => Number.isInteger(token)))) return prompt as number[][];
  throw invalid();
}

export interface ChatMessageInput {
  role: string;
  content: string;
  [key: string]: unknown;
}

/** Chat messages, with array content (text parts) flattened to a string as templates expect. */
export function readMessages(body: Body): ChatMessageInput[] {
  const messages = body.messages;
  if (!Array.isArray(messages)) throw wrongType('messages', 'an array of messages', messages);
  if (messages.length === 0) throw new ApiError(400, 'messages must contain at least one message', 'messages');
  return messages.map((message, index) => {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      throw new ApiError(400, `messages[${index}] must be an object`, 'messages');
    }
    const { role, content, ...rest } = message as Record<string, unknown>;
    if (typeof role !== 'string') throw new ApiError(400, `messages[${index}].role must be a string`, 'messages');
    let text: string;
    if (typeof content === 'string') text = content;
    else if (content === null || content === undefined) text = '';
    else if (Array.isArray(content)) {
      text = content
        .map((part, partIndex) => {
          if (typeof part !== 'object' || part === null || (part as { type?: unknown }).type !== 'text' || typeof (part as { text?: unknown }).text !== 'string') {
            throw new ApiError(400, `messages[${index}].content[${partIndex}] must be a text part ({"type": "text", "text": ...}); this model reads text only`, 'messages');
          }
          return (part as { text: string }).text;
        })
        .join('');
    } else throw new ApiError(400, `messages[${index}].content must be a string or an array of text parts`, 'messages');
    return { ...rest, role, content: text };
  });
}

const marker = Symbol.for('pagoda.scheduler.error');

/** The base of every error @pagoda/scheduler throws. `code` is stable; match on it, not on the message. */
export class SchedulerError extends Error {
  readonly [marker] = true;
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SchedulerError';
    this.code = code;
  }

  /** True for a scheduler error, also one made by another copy of this package. */
  static isInstance(error: unknown): error is SchedulerError {
    return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[marker] === true;
  }
}

/**
 * `addRequest` refused a request that could never run: it is longer than the model's context, or needs more KV
 * blocks than the whole pool has. `param` names the request field at fault, as the HTTP API spells it.
 */
export class RequestRejectedError extends SchedulerError {
  constructor(
    code: 'context_length_exceeded' | 'kv_cache_too_small' | 'invalid_request' | 'duplicate_request_id',
    message: string,
    readonly param: string | undefined,
  ) {
    super(code, message);
    this.name = 'RequestRejectedError';
  }
}

/**
 * Refuses a request whose prompt plus `max_tokens` exceeds the model's context, in the words of OpenAI's API (the
 * message vLLM's server gives too). `param` is `prompt` when the prompt alone fills the context.
 */
export function checkContextLength(maxModelLen: number, numPromptTokens: number, maxTokens: number): void {
  const total = numPromptTokens + maxTokens;
  if (total <= maxModelLen) return;
  throw new RequestRejectedError(
    'context_length_exceeded',
    `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${total} tokens ` +
      `(${numPromptTokens} in the prompt, ${maxTokens} in the completion). Please reduce the length of the prompt or completion.`,
    numPromptTokens >= maxModelLen ? 'prompt' : 'max_tokens',
  );
}

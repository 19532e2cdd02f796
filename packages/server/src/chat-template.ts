import { type ChatMessage, type ChatTemplateOptions, FrontendBudgetError, PagodaEngineError } from '@pagoda/engine';
import type { HandlerContext } from './generation';
import { ApiError } from './http-error';
import type { ResponseSink } from './sink';

/** The template fields a request may send (chat completions and /tokenize). */
export interface TemplateFields {
  readonly chat_template?: string | null;
  readonly chat_template_kwargs?: Readonly<Record<string, unknown>> | null;
  readonly tools?: readonly unknown[] | null;
  readonly add_generation_prompt?: boolean | null;
}

/**
 * Renders and tokenizes a conversation in the engine's tokenizer pool with the request's template (only under
 * `--trust-request-chat-template`), else the server's, else the model's. A failing or over-budget rendering is a
 * 400 naming `chat_template` when the request brought the template, `messages` otherwise.
 */
export async function renderConversation(
  context: HandlerContext,
  messages: readonly ChatMessage[],
  fields: TemplateFields,
  sink: Pick<ResponseSink, 'signal'>,
  addSpecialTokens = false,
): Promise<{ prompt: string; promptTokenIds: number[] }> {
  const requestTemplate = fields.chat_template ?? undefined;
  if (requestTemplate !== undefined && !context.trustRequestChatTemplate) {
    throw new ApiError(
      400,
      'chat_template in a request is refused: this server does not run request templates (start it with --trust-request-chat-template to allow them)',
      'chat_template',
    );
  }
  const chatTemplate = requestTemplate ?? context.chatTemplate;
  const options: ChatTemplateOptions = {
    addGenerationPrompt: fields.add_generation_prompt ?? true,
    ...(fields.chat_template_kwargs ? { templateKwargs: { ...fields.chat_template_kwargs } } : {}),
    ...(fields.tools ? { tools: [...fields.tools] } : {}),
    ...(chatTemplate === undefined ? {} : { chatTemplate }),
  };
  try {
    return await context.engine.applyChatTemplate(messages, { ...options, addSpecialTokens, signal: sink.signal });
  } catch (error) {
    const param = requestTemplate !== undefined ? 'chat_template' : 'messages';
    if (error instanceof FrontendBudgetError) throw new ApiError(400, `the chat template could not be rendered: ${error.message}`, param);
    if (PagodaEngineError.isInstance(error) && error.code === 'chat_template_error') throw new ApiError(400, error.message, param);
    throw error;
  }
}

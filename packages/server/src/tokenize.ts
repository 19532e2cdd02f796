import { renderConversation } from './chat-template';
import { checkModel, type HandlerContext } from './generation';
import { ApiError } from './http-error';
import { readMessages } from './protocol';
import type { DetokenizeRequest, TokenizeRequest } from './schemas';
import type { ResponseSink } from './sink';

/** POST /tokenize: a text, or a conversation rendered with the same template chat completions use. */
export async function handleTokenize(context: HandlerContext, body: TokenizeRequest, sink: ResponseSink): Promise<void> {
  checkModel(context, body.model);
  const { engine } = context;
  let tokens: number[];
  if (body.messages !== undefined) {
    // As vLLM: the rendered template holds its own special tokens, so none are added unless asked.
    tokens = (await renderConversation(context, readMessages(body.messages), body, sink, body.add_special_tokens ?? false)).promptTokenIds;
  } else {
    if (body.prompt === undefined || body.prompt === null) throw new ApiError(400, 'prompt (a string) or messages is required', 'prompt');
    tokens = await engine.encode(body.prompt, { addSpecialTokens: body.add_special_tokens ?? true, signal: sink.signal });
  }
  sink.json(200, { count: tokens.length, max_model_len: engine.context.options.maxModelLen, tokens });
}

/** POST /detokenize */
export async function handleDetokenize(context: HandlerContext, body: DetokenizeRequest, sink: ResponseSink): Promise<void> {
  checkModel(context, body.model);
  const { engine } = context;
  const vocabSize = engine.context.modelConfig.vocabSize;
  const bad = body.tokens.findIndex((token) => token >= vocabSize);
  if (bad >= 0) throw new ApiError(400, `tokens[${bad}] is ${body.tokens[bad]}, outside the vocabulary [0, ${vocabSize})`, 'tokens');
  sink.json(200, { prompt: await engine.decode(body.tokens, { signal: sink.signal }) });
}

import type { CompletionOutput } from '@pagoda/engine';
import { randomUUID } from 'node:crypto';
import { renderConversation } from './chat-template';
import { admitted, checkModel, checkSamplingFields, drive, type HandlerContext, now, startRequests, usageOf } from './generation';
import { chatLogprobs } from './logprobs';
import { readGenerationFields, readMessages } from './protocol';
import type { ChatCompletionRequest } from './schemas';
import type { ResponseSink } from './sink';

/** POST /v1/chat/completions */
export async function handleChatCompletions(context: HandlerContext, body: ChatCompletionRequest, sink: ResponseSink): Promise<void> {
  checkModel(context, body.model);
  const messages = readMessages(body.messages);
  const fields = readGenerationFields(body, { chat: true });
  const { n } = checkSamplingFields(context, fields);
  const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
  const [request] = await admitted(context, n, async () => {
    const { promptTokenIds } = await renderConversation(context, messages, body, sink);
    return startRequests(context, [promptTokenIds], fields, id, 'messages');
  });
  const created = now();
  const { tokenizer } = context.engine.context;
  const wantLogprobs = fields.samplingParams.logprobs !== undefined;
  const toChatLogprobs = (completion: CompletionOutput) => (wantLogprobs ? { content: chatLogprobs(tokenizer, completion.logprobs ?? []) } : null);

  if (!fields.stream) {
    const [final] = await drive(context, sink, [request!], n, () => undefined);
    if (sink.signal.aborted) return;
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
  for (let index = 0; index < n; index += 1) {
    sink.event(chunk([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
  }
  const [final] = await drive(context, sink, [request!], n, (_promptIndex, delta) => {
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
  if (sink.signal.aborted) return;
  if (fields.includeUsage) sink.event({ ...chunk([]), usage: usageOf([final!]) });
  sink.done();
}

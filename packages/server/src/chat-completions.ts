import type { CompletionOutput, RequestOutput } from '@pagoda/engine';
import { randomUUID } from 'node:crypto';
import { renderConversation } from './chat-template';
import { admitted, checkModel, checkSamplingFields, drive, type HandlerContext, now, startRequests, usageOf } from './generation';
import { ApiError } from './http-error';
import { chatLogprobs, promptLogprobsField } from './logprobs';
import { createReasoningParser, type DeltaToolCall, type ReasoningParser, type ToolCall } from './parsers';
import { type GenerationFields, readGenerationFields, readMessages } from './protocol';
import type { ChatCompletionRequest } from './schemas';
import type { ResponseSink } from './sink';
import { planTools, readToolCalls, ToolCallStream, type ToolPlan } from './tool-calls';

/** An assistant reply read out of a whole output: its reasoning, content and tool calls. */
export interface AssistantReply {
  readonly reasoningContent: string | null;
  readonly content: string | null;
  readonly toolCalls: ToolCall[];
}

/** Splits a whole output into reasoning (with a reasoning parser), tool calls (per the plan) and content. */
export function readReply(context: HandlerContext, plan: ToolPlan, text: string): AssistantReply {
  let reasoningContent: string | null = null;
  let content: string | null = text;
  if (context.reasoningParser !== undefined) {
    ({ reasoningContent, content } = createReasoningParser(context.reasoningParser)!.extractReasoningContent(text));
  }
  const { toolCalls, content: rest } = readToolCalls(plan, content ?? '');
  return { reasoningContent, content: toolCalls.length > 0 ? rest : content, toolCalls };
}

/**
 * A stream's reading of one completion: reasoning split off first, then tool calls out of the content, each delta
 * in OpenAI's shape (`reasoning_content`, `content`, `tool_calls` fragments).
 */
export class ReplyStream {
  private readonly reasoning: ReasoningParser | undefined;
  private readonly tools: ToolCallStream;
  private text = '';

  constructor(context: HandlerContext, plan: ToolPlan) {
    this.reasoning = context.reasoningParser === undefined ? undefined : createReasoningParser(context.reasoningParser);
    this.tools = new ToolCallStream(plan);
  }

  get called(): boolean {
    return this.tools.called;
  }

  /** The delta for new text; with `final`, also what the parsers held back. */
  push(delta: string, final: boolean): { reasoningContent?: string; content?: string; toolCalls?: DeltaToolCall[] } {
    const previous = this.text;
    this.text += delta;
    let reasoningContent = '';
    let content = delta;
    if (this.reasoning !== undefined) {
      const split = delta.length > 0 ? this.reasoning.extractReasoningContentStreaming(previous, this.text, delta) : null;
      const held = final ? this.reasoning.flush() : null;
      reasoningContent = (split?.reasoningContent ?? '') + (held?.reasoningContent ?? '');
      content = (split?.content ?? '') + (held?.content ?? '');
    }
    const parts = [this.tools.push(content), ...(final ? [this.tools.end()] : [])];
    const toolCalls = parts.flatMap((part) => part.toolCalls ?? []);
    const text = parts.map((part) => part.content ?? '').join('');
    return {
      ...(reasoningContent.length > 0 ? { reasoningContent } : {}),
      ...(text.length > 0 ? { content: text } : {}),
      ...(toolCalls.length > 0 ? { toolCalls } : {}),
    };
  }
}

/** A chat reply of no tokens has nothing to score either (completions' echo does): a 400 naming the field. */
export function refuseZeroTokens(fields: GenerationFields): void {
  if (fields.maxTokens === 0) throw new ApiError(400, `${fields.maxTokensParam} must be at least 1, got 0`, fields.maxTokensParam);
}

/** OpenAI's finish reason: `tool_calls` when the model called tools, unless the output was cut (`length`). */
export function finishReason(completion: CompletionOutput, called: boolean): string | null {
  if (completion.finishReason === undefined) return null;
  return called && completion.finishReason !== 'length' ? 'tool_calls' : completion.finishReason;
}

/** A request's tool plan, its constraint merged into the sampling fields (one constraint a request). */
export function withToolConstraint(fields: GenerationFields, plan: ToolPlan): GenerationFields {
  if (plan.constraint === undefined) return fields;
  if (fields.constraint !== undefined) {
    throw new ApiError(400, `tool_choice forces tool calls, which cannot be combined with ${fields.constraint.param}`, fields.constraint.param);
  }
  return {
    ...fields,
    samplingParams: { ...fields.samplingParams, structuredOutputs: plan.constraint },
    constraint: { structuredOutputs: plan.constraint, param: 'tool_choice' },
  };
}

/** POST /v1/chat/completions */
export async function handleChatCompletions(context: HandlerContext, body: ChatCompletionRequest, sink: ResponseSink): Promise<void> {
  checkModel(context, body.model);
  const messages = readMessages(body.messages);
  const plan = planTools(body, context.tools);
  const fields = withToolConstraint(readGenerationFields(body, { chat: true }), plan);
  refuseZeroTokens(fields);
  const { n } = checkSamplingFields(context, fields);
  const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
  const [request] = await admitted(context, n, async () => {
    const { promptTokenIds } = await renderConversation(context, messages, { ...body, tools: plan.tools ?? null }, sink);
    return startRequests(context, [promptTokenIds], fields, id, 'messages');
  });
  const created = now();
  const { tokenizer } = context.engine.context;
  const wantLogprobs = fields.samplingParams.logprobs !== undefined;
  const toChatLogprobs = (completion: CompletionOutput) => (wantLogprobs ? { content: chatLogprobs(tokenizer, completion.logprobs ?? []) } : null);

  if (!fields.stream) {
    const [final] = await drive(context, sink, [request!], n, () => undefined, fields, 'messages');
    if (sink.signal.aborted) return;
    sink.json(200, {
      id,
      object: 'chat.completion',
      created,
      model: context.servedModelName,
      choices: final!.outputs.map((completion) => {
        const reply = readReply(context, plan, completion.text);
        return {
          index: completion.index,
          message: {
            role: 'assistant',
            content: reply.content ?? (reply.toolCalls.length > 0 || reply.reasoningContent !== null ? null : ''),
            ...(reply.reasoningContent === null ? {} : { reasoning_content: reply.reasoningContent }),
            ...(reply.toolCalls.length > 0 ? { tool_calls: reply.toolCalls } : {}),
          },
          logprobs: toChatLogprobs(completion),
          finish_reason: finishReason(completion, reply.toolCalls.length > 0),
          stop_reason: completion.stopReason ?? null,
        };
      }),
      usage: usageOf([final!]),
      ...(fields.samplingParams.promptLogprobs == null ? {} : { prompt_logprobs: promptLogprobsField(tokenizer, final!.promptLogprobs) }),
    });
    return;
  }

  const chunk = (choices: unknown[]) => ({ id, object: 'chat.completion.chunk', created, model: context.servedModelName, choices });
  const replies = Array.from({ length: n }, () => new ReplyStream(context, plan));
  // The stream (and its 200) begins with the first output, so a refusal before it (a constraint XGrammar cannot
  // compile) is still a plain 400.
  let opened = false;
  const open = (promptLogprobs: RequestOutput['promptLogprobs']) => {
    if (opened) return;
    opened = true;
    const scores = fields.samplingParams.promptLogprobs == null ? {} : { prompt_logprobs: promptLogprobsField(tokenizer, promptLogprobs) };
    for (let index = 0; index < n; index += 1) {
      sink.event({ ...chunk([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]), ...(index === 0 ? scores : {}) });
    }
  };
  const [final] = await drive(
    context,
    sink,
    [request!],
    n,
    (_promptIndex, delta) => {
      open(delta.promptLogprobs);
      for (const completion of delta.outputs) {
        const reply = replies[completion.index]!;
        const finished = completion.finishReason !== undefined;
        const parts = reply.push(completion.text, finished);
        const message = {
          ...(parts.reasoningContent === undefined ? {} : { reasoning_content: parts.reasoningContent }),
          ...(parts.content === undefined ? {} : { content: parts.content }),
          ...(parts.toolCalls === undefined ? {} : { tool_calls: parts.toolCalls }),
        };
        if (Object.keys(message).length === 0 && !finished && completion.logprobs === undefined) continue;
        sink.event(
          chunk([
            {
              index: completion.index,
              delta: Object.keys(message).length > 0 || finished ? message : { content: '' },
              logprobs: toChatLogprobs(completion),
              finish_reason: finished ? finishReason(completion, reply.called) : null,
              stop_reason: completion.stopReason ?? null,
            },
          ]),
        );
      }
    },
    fields,
    'messages',
  );
  if (sink.signal.aborted) return;
  open(undefined);
  if (fields.includeUsage) sink.event({ ...chunk([]), usage: usageOf([final!]) });
  sink.done();
}

import type { ChatMessage as EngineChatMessage, RequestOutput } from '@pagoda/engine';
import { LRUCache } from 'lru-cache';
import { randomUUID } from 'node:crypto';
import { finishReason, readReply, ReplyStream, withToolConstraint } from './chat-completions';
import { renderConversation } from './chat-template';
import { admitted, checkModel, checkSamplingFields, drive, type HandlerContext, startRequests } from './generation';
import { ApiError } from './http-error';
import { type GenerationFields, readGenerationFields, readMessages } from './protocol';
import type { ChatMessage, ResponsesRequest } from './schemas';
import type { ResponseSink } from './sink';
import { planTools, type ToolPlan } from './tool-calls';

const newId = (prefix: string) => `${prefix}_${randomUUID().replace(/-/g, '')}`;

/** An output item of a response, as OpenAI's Responses API shapes them. */
type OutputItem =
  | { type: 'reasoning'; id: string; summary: []; content: Array<{ type: 'reasoning_text'; text: string }>; status: string }
  | { type: 'message'; id: string; status: string; role: 'assistant'; content: Array<{ type: 'output_text'; text: string; annotations: [] }> }
  | { type: 'function_call'; id: string; call_id: string; name: string; arguments: string; status: string };

interface StoredResponse {
  /** The response as it was returned. */
  readonly response: Record<string, unknown>;
  /** The conversation so far (without instructions, which are not carried on): what a follow-up continues. */
  readonly conversation: readonly EngineChatMessage[];
}

/**
 * Responses kept for `previous_response_id` and `GET /v1/responses/{id}`: in memory, least recently used first out,
 * bounded by their size (a stored conversation holds its whole history).
 */
export class ResponseStore {
  private readonly responses: LRUCache<string, StoredResponse>;

  constructor(maxBytes = 64 * 2 ** 20) {
    this.responses = new LRUCache({ maxSize: maxBytes, sizeCalculation: (stored) => Math.max(1, JSON.stringify(stored).length * 2) });
  }

  get(id: string): StoredResponse | undefined {
    return this.responses.get(id);
  }

  set(id: string, stored: StoredResponse): void {
    this.responses.set(id, stored);
  }
}

/** Text of a content part list (`input_text`, `output_text`, `text`); anything else is refused. */
function partsText(content: unknown, where: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw new ApiError(400, `${where}.content must be a string or an array of text parts`, 'input');
  return content
    .map((part: { type?: unknown; text?: unknown }, index) => {
      if (['input_text', 'output_text', 'text'].includes(String(part?.type)) && typeof part.text === 'string') return part.text;
      throw new ApiError(400, `${where}.content[${index}] must be a text part (input_text or output_text); this model reads text only`, 'input');
    })
    .join('');
}

/**
 * The Responses API's input as chat messages: a string is one user message; items are messages (`developer` is
 * `system`), function calls (an assistant message's `tool_calls`), their outputs (`tool` messages) and reasoning
 * items (left out: the chat templates drop earlier reasoning).
 */
export function inputMessages(input: ResponsesRequest['input']): ChatMessage[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  const messages: ChatMessage[] = [];
  input.forEach((item, index) => {
    const where = `input[${index}]`;
    const type = item.type ?? 'message';
    if (type === 'message') {
      const role = item.role === 'developer' ? 'system' : item.role;
      if (typeof role !== 'string') throw new ApiError(400, `${where}.role must be a string`, 'input');
      messages.push({ role, content: partsText(item.content, where) });
    } else if (type === 'function_call') {
      const call = { id: String(item.call_id ?? item.id), type: 'function', function: { name: String(item.name), arguments: String(item.arguments ?? '{}') } };
      const last = messages.at(-1) as (ChatMessage & { tool_calls?: unknown[] }) | undefined;
      if (last?.role === 'assistant' && Array.isArray(last.tool_calls)) last.tool_calls.push(call);
      else messages.push({ role: 'assistant', content: '', tool_calls: [call] } as ChatMessage);
    } else if (type === 'function_call_output') {
      messages.push({ role: 'tool', content: partsText(item.output, where), tool_call_id: String(item.call_id) } as ChatMessage);
    } else if (type !== 'reasoning') {
      throw new ApiError(400, `${where}.type ${JSON.stringify(type)} is not supported (message, function_call, function_call_output and reasoning are)`, 'input');
    }
  });
  return messages;
}

/** The Responses API's fields in chat completions' words, for the shared readers. */
function asChatFields(body: ResponsesRequest) {
  const format = body.text?.format;
  const choice = body.tool_choice;
  return {
    max_tokens: body.max_output_tokens,
    temperature: body.temperature,
    top_p: body.top_p,
    top_k: body.top_k,
    min_p: body.min_p,
    repetition_penalty: body.repetition_penalty,
    seed: body.seed,
    response_format: format === undefined ? null : { type: format.type, json_schema: { name: format.name, schema: format.schema } },
    tools:
      body.tools?.map((tool, index) => {
        if (tool.type !== 'function' || typeof tool.name !== 'string') {
          throw new ApiError(400, `tools[${index}] must be a function tool ({"type": "function", "name": ...}); other tool types are not supported`, 'tools');
        }
        return { type: 'function', function: { name: tool.name, ...(tool.description ? { description: tool.description } : {}), ...(tool.parameters ? { parameters: tool.parameters } : {}) } };
      }) ?? null,
    tool_choice: typeof choice === 'object' && choice !== null ? { type: choice.type, function: { name: String(choice.name) } } : choice,
    parallel_tool_calls: body.parallel_tool_calls,
  };
}

/** A reply as the Responses API's output items. */
function outputItems(context: HandlerContext, plan: ToolPlan, completion: RequestOutput['outputs'][number]): OutputItem[] {
  const reply = readReply(context, plan, completion.text);
  const status = completion.finishReason === 'length' ? 'incomplete' : 'completed';
  const items: OutputItem[] = [];
  if (reply.reasoningContent !== null) {
    items.push({ type: 'reasoning', id: newId('rs'), summary: [], content: [{ type: 'reasoning_text', text: reply.reasoningContent }], status });
  }
  if (reply.content !== null || reply.toolCalls.length === 0) {
    items.push({ type: 'message', id: newId('msg'), status, role: 'assistant', content: [{ type: 'output_text', text: reply.content ?? '', annotations: [] }] });
  }
  for (const call of reply.toolCalls) {
    items.push({ type: 'function_call', id: newId('fc'), call_id: call.id, name: call.function.name, arguments: call.function.arguments, status: 'completed' });
  }
  return items;
}

/** Output items as the chat messages a follow-up (`previous_response_id`) continues from. */
function itemsAsMessages(items: readonly OutputItem[]): EngineChatMessage[] {
  const content = items.flatMap((item) => (item.type === 'message' ? item.content.map((part) => part.text) : [])).join('');
  const calls = items.flatMap((item) =>
    item.type === 'function_call' ? [{ id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } }] : [],
  );
  return readMessages([{ role: 'assistant', content, ...(calls.length > 0 ? { tool_calls: calls } : {}) } as ChatMessage]);
}

/** POST /v1/responses */
export async function handleResponses(context: HandlerContext & { responses: ResponseStore }, body: ResponsesRequest, sink: ResponseSink): Promise<void> {
  checkModel(context, body.model);
  let history: readonly EngineChatMessage[] = [];
  if (body.previous_response_id !== undefined && body.previous_response_id !== null) {
    const previous = context.responses.get(body.previous_response_id);
    if (previous === undefined) throw new ApiError(404, `Previous response with id '${body.previous_response_id}' not found.`, 'previous_response_id');
    history = previous.conversation;
  }
  const input = readMessages(inputMessages(body.input));
  if (input.length === 0) throw new ApiError(400, 'input must hold at least one item', 'input');
  const chat = asChatFields(body);
  const plan = planTools(chat as Parameters<typeof planTools>[0], context.tools);
  const fields: GenerationFields = withToolConstraint(
    readGenerationFields({ ...chat, stream: body.stream, messages: [] } as unknown as Parameters<typeof readGenerationFields>[0], { chat: true }),
    plan,
  );
  if (fields.maxTokens === 0) throw new ApiError(400, 'max_output_tokens must be at least 1, got 0', 'max_output_tokens');
  checkSamplingFields(context, fields);
  const instructions = body.instructions ? readMessages([{ role: 'system', content: body.instructions }]) : [];
  const conversation = [...history, ...input];
  const id = newId('resp');
  const [request] = await admitted(context, 1, async () => {
    const { promptTokenIds } = await renderConversation(context, [...instructions, ...conversation], { tools: plan.tools ?? null }, sink);
    return startRequests(context, [promptTokenIds], fields, id, 'messages');
  });
  const createdAt = Math.floor(Date.now() / 1000);
  const store = body.store ?? true;
  const responseObject = (status: string, output: OutputItem[], final?: RequestOutput) => ({
    id,
    object: 'response',
    created_at: createdAt,
    status,
    error: null,
    incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: context.servedModelName,
    output,
    parallel_tool_calls: plan.parallelToolCalls,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: body.reasoning?.effort ?? null, summary: body.reasoning?.summary ?? null },
    store,
    temperature: body.temperature ?? null,
    text: { format: body.text?.format ?? { type: 'text' } },
    tool_choice: body.tool_choice ?? (plan.tools === undefined ? 'none' : 'auto'),
    tools: body.tools ?? [],
    top_p: body.top_p ?? null,
    truncation: 'disabled',
    usage: final === undefined ? null : usage(final),
    user: body.user ?? null,
    metadata: body.metadata ?? {},
  });
  const finish = (final: RequestOutput, output: OutputItem[]) => {
    const completion = final.outputs[0]!;
    const response = responseObject(completion.finishReason === 'length' ? 'incomplete' : 'completed', output, final);
    if (store) context.responses.set(id, { response, conversation: [...conversation, ...itemsAsMessages(output)] });
    return response;
  };

  if (!fields.stream) {
    const [final] = await drive(context, sink, [request!], 1, () => undefined, fields, 'messages');
    if (sink.signal.aborted) return;
    sink.json(200, finish(final!, outputItems(context, plan, final!.outputs[0]!)));
    return;
  }

  const events = new ResponseEvents(sink);
  const reply = new ReplyStream(context, plan);
  let started = false;
  const begin = () => {
    if (started) return;
    started = true;
    events.send('response.created', { response: responseObject('in_progress', []) });
    events.send('response.in_progress', { response: responseObject('in_progress', []) });
  };
  let final: RequestOutput | undefined;
  try {
    [final] = await drive(
      context,
      sink,
      [request!],
      1,
      (_index, delta) => {
        begin();
        const completion = delta.outputs[0];
        if (completion === undefined) return;
        const finished = completion.finishReason !== undefined;
        const parts = reply.push(completion.text, finished);
        if (parts.reasoningContent !== undefined) events.reasoning(parts.reasoningContent);
        if (parts.content !== undefined) events.text(parts.content);
        for (const call of parts.toolCalls ?? []) events.toolCall(call);
        if (finished) events.closeAll(finishReason(completion, reply.called) === 'length' ? 'incomplete' : 'completed');
      },
      fields,
      'messages',
    );
  } catch (error) {
    if (!started) throw error;
    const { message, param } = error instanceof ApiError ? error : { message: (error as Error).message, param: null };
    events.send('error', { code: error instanceof ApiError ? String(error.status) : 'server_error', message, param });
    sink.end();
    return;
  }
  if (sink.signal.aborted) return;
  begin();
  const response = finish(final!, events.items);
  events.send(response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response });
  sink.end();
}

function usage(final: RequestOutput) {
  const input = final.promptTokenIds.length;
  const output = final.outputs.reduce((sum, completion) => sum + completion.tokenIds.length, 0);
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: final.numCachedTokens },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + output,
  };
}

/**
 * The Responses API's typed stream: each output item opens (`output_item.added`), streams its deltas
 * (`reasoning_text.delta`, `output_text.delta`, `function_call_arguments.delta`) and closes (`….done`,
 * `output_item.done`) before the next one opens; every event carries a `sequence_number`.
 */
class ResponseEvents {
  readonly items: OutputItem[] = [];
  private sequence = 0;
  private open: { item: OutputItem; text: string } | undefined;
  /** Tool calls by their stream index, to their item. */
  private readonly calls = new Map<number, { item: Extract<OutputItem, { type: 'function_call' }> }>();

  constructor(private readonly sink: ResponseSink) {}

  send(type: string, fields: Record<string, unknown>): void {
    this.sink.namedEvent(type, { type, sequence_number: this.sequence++, ...fields });
  }

  reasoning(delta: string): void {
    const open = this.ensure('reasoning');
    open.text += delta;
    this.send('response.reasoning_text.delta', { item_id: open.item.id, output_index: this.items.length - 1, content_index: 0, delta });
  }

  text(delta: string): void {
    const open = this.ensure('message');
    open.text += delta;
    this.send('response.output_text.delta', { item_id: open.item.id, output_index: this.items.length - 1, content_index: 0, delta, logprobs: [] });
  }

  toolCall(call: { index: number; id?: string; function: { name?: string; arguments?: string } }): void {
    let known = this.calls.get(call.index);
    if (known === undefined) {
      this.close('completed');
      const item = { type: 'function_call' as const, id: newId('fc'), call_id: call.id ?? newId('call'), name: call.function.name ?? '', arguments: '', status: 'in_progress' };
      known = { item };
      this.calls.set(call.index, known);
      this.items.push(item);
      this.open = { item, text: '' };
      this.send('response.output_item.added', { output_index: this.items.length - 1, item: { ...item } });
    }
    const fragment = call.function.arguments ?? '';
    if (fragment.length > 0) {
      known.item.arguments += fragment;
      this.send('response.function_call_arguments.delta', { item_id: known.item.id, output_index: this.items.indexOf(known.item), delta: fragment });
    }
  }

  /** The output ended: closes the open item (a reply with nothing in it still has its empty message). */
  closeAll(status: string): void {
    if (this.items.length === 0) this.ensure('message');
    this.close(status);
  }

  /** The open item of `type`, opening one (and closing the last) when another kind is open. */
  private ensure(type: 'reasoning' | 'message'): { item: OutputItem; text: string } {
    if (this.open?.item.type === type) return this.open;
    this.close('completed');
    const item: OutputItem =
      type === 'reasoning'
        ? { type: 'reasoning', id: newId('rs'), summary: [], content: [], status: 'in_progress' }
        : { type: 'message', id: newId('msg'), status: 'in_progress', role: 'assistant', content: [] };
    this.items.push(item);
    this.open = { item, text: '' };
    const outputIndex = this.items.length - 1;
    this.send('response.output_item.added', { output_index: outputIndex, item: { ...item, content: [] } });
    const part = type === 'reasoning' ? { type: 'reasoning_text', text: '' } : { type: 'output_text', text: '', annotations: [] };
    this.send('response.content_part.added', { item_id: item.id, output_index: outputIndex, content_index: 0, part });
    return this.open;
  }

  private close(status: string): void {
    const open = this.open;
    if (open === undefined) return;
    this.open = undefined;
    const outputIndex = this.items.indexOf(open.item);
    const item = open.item;
    item.status = status;
    if (item.type === 'reasoning') {
      item.content = [{ type: 'reasoning_text', text: open.text }];
      this.send('response.reasoning_text.done', { item_id: item.id, output_index: outputIndex, content_index: 0, text: open.text });
      this.send('response.content_part.done', { item_id: item.id, output_index: outputIndex, content_index: 0, part: item.content[0] });
    } else if (item.type === 'message') {
      item.content = [{ type: 'output_text', text: open.text, annotations: [] }];
      this.send('response.output_text.done', { item_id: item.id, output_index: outputIndex, content_index: 0, text: open.text, logprobs: [] });
      this.send('response.content_part.done', { item_id: item.id, output_index: outputIndex, content_index: 0, part: item.content[0] });
    } else {
      item.status = 'completed';
      this.send('response.function_call_arguments.done', { item_id: item.id, output_index: outputIndex, arguments: item.arguments });
    }
    this.send('response.output_item.done', { output_index: outputIndex, item });
  }
}


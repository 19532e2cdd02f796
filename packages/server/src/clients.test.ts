/**
 * Structured outputs, tools, reasoning and the Responses API through the clients agent frameworks use, against the
 * real server on the fixture models. Their weights are random, so schemas are bounded (enums, booleans, bounded
 * numbers) and the grammar alone makes an answer valid; the server runs with disable_any_whitespace, without which
 * a random model pads JSON with whitespace to the token limit.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';
import { Agent, OpenAIProvider, Runner, setTracingDisabled } from '@openai/agents';
import { AsyncLLM } from '@pagoda/engine';
import { isJsonPrefix } from '@pagoda/engine/test';
import { fixturePath } from '@pagoda/fixtures';
import { generateObject, generateText, jsonSchema, streamObject, tool } from 'ai';
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createPagodaServer, type ErrorBody, type PagodaServer } from './index';

setTracingDisabled(true); // @openai/agents would send traces to its vendor

const model = 'tiny-qwen2';
const Weather = z.object({ city: z.enum(['Paris', 'Rome', 'Oslo']), sunny: z.boolean(), days: z.number().int().min(1).max(7) });
const weatherSchema = z.toJSONSchema(Weather) as Record<string, unknown>;
const weatherTool = { type: 'function' as const, function: { name: 'get_weather', description: 'The weather', parameters: weatherSchema } };

let engine: AsyncLLM;
let server: PagodaServer;
let baseURL: string;
let client: OpenAI;

beforeAll(async () => {
  engine = await AsyncLLM.create(fixturePath(model), {
    kvCacheMemory: '32MiB',
    maxModelLen: 1024,
    intraOpNumThreads: 1,
    tokenizerPoolSize: 1,
    structuredOutputsConfig: { disableAnyWhitespace: true },
  });
  server = createPagodaServer({ engine, servedModelName: model, version: 'clients', enableAutoToolChoice: true });
  baseURL = `http://127.0.0.1:${(await server.listen(0)).port}/v1`;
  client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await engine?.close();
});

/** POSTs to `/v1${path}`, or to the root for vLLM's own endpoints. */
async function post(path: string, body: unknown) {
  const url = path === '/tokenize' ? baseURL.replace(/\/v1$/, path) : `${baseURL}${path}`;
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> & ErrorBody };
}

vi.setConfig({ testTimeout: 60_000 });

const user = (content: string) => [{ role: 'user' as const, content }];

describe('structured outputs over chat completions', () => {
  it('parses with openai’s chat.completions.parse and a zod schema', async () => {
    const completion = await client.chat.completions.parse({ model, messages: user('Weather in Rome?'), response_format: zodResponseFormat(Weather, 'weather'), seed: 1 });
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(Weather.parse(completion.choices[0]!.message.parsed)).toBeTruthy();
  });

  it('validates every one of n = 3 choices, streamed and not, reproducibly with a seed', async () => {
    const request = { model, messages: user('Weather?'), response_format: zodResponseFormat(Weather, 'weather'), n: 3, temperature: 1, seed: 7 };
    const first = await client.chat.completions.create(request);
    const again = await client.chat.completions.create(request);
    expect(first.choices.map((choice) => choice.message.content)).toEqual(again.choices.map((choice) => choice.message.content));
    for (const choice of first.choices) Weather.parse(JSON.parse(choice.message.content!));
    const stream = await client.chat.completions.create({ ...request, stream: true });
    const texts = ['', '', ''];
    for await (const chunk of stream) for (const choice of chunk.choices) texts[choice.index] += choice.delta.content ?? '';
    for (const text of texts) Weather.parse(JSON.parse(text));
  });

  it('keeps a busy batch valid while the scheduler preempts', async () => {
    // A KV cache of 384 tokens for twelve requests that need about 1,500: the scheduler must preempt.
    const small = await AsyncLLM.create(fixturePath(model), {
      kvCacheMemory: '96KiB',
      maxModelLen: 256,
      intraOpNumThreads: 1,
      tokenizerPoolSize: 1,
      structuredOutputsConfig: { disableAnyWhitespace: true },
    });
    const busy = createPagodaServer({ engine: small, servedModelName: model, version: 'busy' });
    const url = `http://127.0.0.1:${(await busy.listen(0)).port}/v1`;
    try {
      const busyClient = new OpenAI({ baseURL: url, apiKey: 'unused', maxRetries: 0 });
      const constrained = Array.from({ length: 6 }, (_, index) =>
        busyClient.chat.completions.create({ model, messages: user(`Weather ${index}`), response_format: zodResponseFormat(Weather, 'weather'), temperature: 1, seed: index }),
      );
      const free = Array.from({ length: 6 }, (_, index) =>
        busyClient.completions.create({ model, prompt: `Story ${index}`, max_tokens: 200, ignore_eos: true, temperature: 1, seed: index } as never),
      );
      const answers = await Promise.all(constrained);
      await Promise.all(free);
      expect(small.makeStats().numPreemptionsTotal).toBeGreaterThan(0);
      for (const answer of answers) Weather.parse(JSON.parse(answer.choices[0]!.message.content!));
    } finally {
      await busy.close();
      await small.close();
    }
  });

  it('gives a valid JSON prefix when json_object or an unbounded schema runs into max_tokens, and JSON when it ends', async () => {
    const formats = [{ type: 'json_object' as const }, { type: 'json_schema' as const, json_schema: { name: 'note', schema: { type: 'object', properties: { note: { type: 'string' } }, required: ['note'] } } }];
    for (const response_format of formats) {
      const finishes = new Set<string>();
      for (let seed = 0; seed < 6; seed += 1) {
        const completion = await client.chat.completions.create({ model, messages: user('JSON please'), response_format, max_tokens: 12, seed, temperature: 1 });
        const { finish_reason: finish, message } = completion.choices[0]!;
        finishes.add(finish);
        if (finish === 'length') expect(isJsonPrefix(message.content!), message.content!).toBe(true);
        else expect(typeof JSON.parse(message.content!), message.content!).toBe('object');
      }
      expect(finishes.has('length')).toBe(true);
    }
  });

  it('takes vLLM’s structured_outputs and guided_* fields, and names the field of a bad one', async () => {
    const choice = await post('/chat/completions', { model, messages: user('Pick'), structured_outputs: { choice: ['yes', 'no'] } });
    expect(['yes', 'no']).toContain((choice.body as unknown as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content);
    const regex = await post('/completions', { model, prompt: 'A date:', guided_regex: '\\d{4}-\\d{2}-\\d{2}', max_tokens: 20 });
    expect((regex.body as unknown as { choices: Array<{ text: string }> }).choices[0]!.text).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    const unknownType = await post('/chat/completions', { model, messages: user('x'), response_format: { type: 'yaml' } });
    expect(unknownType).toMatchObject({ status: 400, body: { error: { param: 'response_format' } } });
    const uncompilable = await post('/chat/completions', { model, messages: user('x'), response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'no-such-type' } } } });
    expect(uncompilable.status).toBe(400);
    expect(uncompilable.body.error.param).toBe('response_format');
    const streamed = await post('/chat/completions', { model, messages: user('x'), guided_json: { type: 'no-such-type' }, stream: true });
    expect(streamed).toMatchObject({ status: 400, body: { error: { param: 'guided_json' } } });
    const two = await post('/chat/completions', { model, messages: user('x'), guided_regex: 'a', guided_choice: ['b'] });
    expect(two).toMatchObject({ status: 400, body: { error: { param: 'guided_choice' } } });
  });
});

describe('tool calls over chat completions', () => {
  it('forces a well-formed call with tool_choice "required" and a named function, streamed as OpenAI does', async () => {
    for (const tool_choice of ['required' as const, { type: 'function' as const, function: { name: 'get_weather' } }]) {
      const completion = await client.chat.completions.create({ model, messages: user('Weather?'), tools: [weatherTool], tool_choice, parallel_tool_calls: false, seed: 4 });
      const choice = completion.choices[0]!;
      expect(choice.finish_reason).toBe('tool_calls');
      expect(choice.message.tool_calls).toHaveLength(1);
      const call = choice.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      expect(call.function.name).toBe('get_weather');
      Weather.parse(JSON.parse(call.function.arguments));
    }
    const stream = await client.chat.completions.create({ model, messages: user('Weather?'), tools: [weatherTool], tool_choice: 'required', parallel_tool_calls: false, seed: 4, stream: true });
    const fragments: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      fragments.push(...(chunk.choices[0]?.delta.tool_calls ?? []));
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe('tool_calls');
    expect(fragments[0]).toMatchObject({ index: 0, id: expect.stringMatching(/^chatcmpl-tool-/), type: 'function', function: { name: 'get_weather' } });
    Weather.parse(JSON.parse(fragments.map((fragment) => fragment.function?.arguments ?? '').join('')));
  });

  it('refuses tool_choice "auto" without --enable-auto-tool-choice, and a function that is not among the tools', async () => {
    const strict = createPagodaServer({ engine, servedModelName: model, version: 'strict' });
    const url = `http://127.0.0.1:${(await strict.listen(0)).port}/v1`;
    try {
      const response = await fetch(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: user('x'), tools: [weatherTool] }) });
      expect(response.status).toBe(400);
      expect(((await response.json()) as ErrorBody).error).toMatchObject({ param: 'tool_choice', message: expect.stringMatching(/--enable-auto-tool-choice/) });
    } finally {
      await strict.close();
    }
    const unknown = await post('/chat/completions', { model, messages: user('x'), tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'nope' } } });
    expect(unknown).toMatchObject({ status: 400, body: { error: { param: 'tool_choice' } } });
  });

  it('renders a history with the assistant’s tool calls and the tool’s result', async () => {
    const completion = await client.chat.completions.create({
      model,
      messages: [
        { role: 'user', content: 'Weather in Oslo?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Oslo", "sunny": true, "days": 2}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'Sunny, 21 °C' },
      ],
      tools: [weatherTool],
      tool_choice: 'none',
      max_tokens: 4,
    });
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(100);
    const tokenized = await post('/tokenize', { messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{"a": 1}' } }] }], tools: [weatherTool] });
    const text = await engine.decode((tokenized.body as unknown as { tokens: number[] }).tokens, { skipSpecialTokens: false });
    expect(text).toContain('{"name": "f", "arguments": {"a": 1}}'); // arguments rendered once, not as a quoted string
  });
});

describe('the Vercel AI SDK', () => {
  const provider = () => createOpenAICompatible({ name: 'pagoda', baseURL, apiKey: 'unused', supportsStructuredOutputs: true });

  it('generateObject and streamObject return objects that validate', async () => {
    const { object } = await generateObject({ model: provider()(model), schema: Weather, prompt: 'Weather?', seed: 5 });
    expect(Weather.parse(object)).toEqual(object);
    const streamed = streamObject({ model: provider()(model), schema: Weather, prompt: 'Weather?', seed: 6 });
    const partials: unknown[] = [];
    for await (const partial of streamed.partialObjectStream) partials.push(partial);
    expect(partials.length).toBeGreaterThan(1);
    expect(Weather.parse(await streamed.object)).toEqual(partials.at(-1));
  });

  it('generateText with tools and toolChoice "required" gets a call whose input validates', async () => {
    const result = await generateText({
      model: provider()(model),
      prompt: 'Weather?',
      tools: { get_weather: tool({ description: 'The weather', inputSchema: Weather }) },
      toolChoice: 'required',
      seed: 8,
    });
    expect(result.toolCalls.length).toBeGreaterThan(0);
    expect(result.toolCalls[0]!.toolName).toBe('get_weather');
    expect(Weather.parse(result.toolCalls[0]!.input)).toBeTruthy();
  });

  it('@ai-sdk/openai’s default model speaks the Responses API: text, and an object', async () => {
    const openai = createOpenAI({ baseURL, apiKey: 'unused' });
    const text = await generateText({ model: openai(model), prompt: 'Hello', maxOutputTokens: 8 });
    expect(text.text.length).toBeGreaterThan(0);
    expect(text.response.id).toMatch(/^resp_/);
    const { object } = await generateObject({ model: openai(model), schema: jsonSchema<z.infer<typeof Weather>>(weatherSchema as never), prompt: 'Weather?', seed: 9 });
    expect(Weather.parse(object)).toBeTruthy();
  });
});

describe('LangChain', () => {
  // Seeded, so each run samples the same tokens: unseeded at temperature 1 the random model once returned no tool call
  // in a full test run.
  const chat = () => new ChatOpenAI({ model, apiKey: 'unused', configuration: { baseURL }, temperature: 1, maxRetries: 0, modelKwargs: { seed: 3 } });

  it('withStructuredOutput works by function calling and by JSON schema', async () => {
    for (const method of ['functionCalling', 'jsonSchema'] as const) {
      const result = await chat().withStructuredOutput(Weather, { method }).invoke('Weather?');
      expect(Weather.parse(result), method).toBeTruthy();
    }
  });

  it('withStructuredOutput in JSON mode gets JSON (a random model never closes free JSON: a valid prefix at the limit)', async () => {
    const llm = new ChatOpenAI({ model, apiKey: 'unused', configuration: { baseURL }, maxTokens: 16, maxRetries: 0 });
    const result = await llm.withStructuredOutput(z.record(z.string(), z.unknown()), { method: 'jsonMode', includeRaw: true }).invoke('JSON please');
    const raw = result.raw.content as string;
    expect(isJsonPrefix(raw), raw).toBe(true);
    if (result.parsed !== null) expect(typeof result.parsed).toBe('object');
  });

  it('bindTools with tool_choice gets calls whose arguments validate', async () => {
    const bound = chat().bindTools([{ type: 'function', function: weatherTool.function }], { tool_choice: 'get_weather' });
    const message = await bound.invoke('Weather?');
    expect(message.tool_calls![0]!.name).toBe('get_weather');
    expect(Weather.parse(message.tool_calls![0]!.args)).toBeTruthy();
  });
});

describe('the Responses API', () => {
  it('answers a string input and a conversation of items, streamed with typed events', async () => {
    const response = await client.responses.create({ model, input: 'Hello', max_output_tokens: 8 });
    expect(response).toMatchObject({ object: 'response', status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    expect(response.output_text.length).toBeGreaterThan(0);
    expect(response.usage!.output_tokens).toBe(8);
    const stream = await client.responses.create({ model, instructions: 'Be brief.', input: [{ role: 'user', content: 'Hi' }], max_output_tokens: 6, stream: true });
    const types: string[] = [];
    let text = '';
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed' || event.type === 'response.incomplete') completed = event.response;
    }
    expect(types[0]).toBe('response.created');
    expect(types).toContain('response.output_item.added');
    expect(types).toContain('response.output_text.done');
    expect(types.at(-1)).toBe('response.incomplete');
    const message = completed!.output.find((item) => item.type === 'message') as OpenAI.Responses.ResponseOutputMessage;
    expect((message.content[0] as OpenAI.Responses.ResponseOutputText).text).toBe(text);
  });

  it('parses text.format json_schema with responses.parse and zod', async () => {
    const response = await client.responses.parse({ model, input: 'Weather?', text: { format: zodTextFormat(Weather, 'weather') } });
    expect(Weather.parse(response.output_parsed)).toBeTruthy();
  });

  it('calls function tools, takes their outputs back, and continues from previous_response_id', async () => {
    const tools = [{ type: 'function' as const, name: 'get_weather', description: 'The weather', parameters: weatherSchema, strict: true }];
    const first = await client.responses.create({ model, input: 'Weather?', tools, tool_choice: 'required', parallel_tool_calls: false });
    const call = first.output.find((item) => item.type === 'function_call') as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call.name).toBe('get_weather');
    Weather.parse(JSON.parse(call.arguments));
    const second = await client.responses.create({
      model,
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: 'Sunny' }],
      tools,
      tool_choice: 'none',
      max_output_tokens: 4,
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(second.usage!.input_tokens).toBeGreaterThan(first.usage!.input_tokens);
    expect((await client.responses.retrieve(second.id)).id).toBe(second.id);
    const unstored = await client.responses.create({ model, input: 'x', max_output_tokens: 1, store: false });
    await expect(client.responses.create({ model, input: 'y', previous_response_id: unstored.id })).rejects.toMatchObject({ status: 404 });
  });

  it('@openai/agents: an agent with an outputType on its default (Responses) model', async () => {
    const runner = new Runner({ modelProvider: new OpenAIProvider({ baseURL, apiKey: 'unused', useResponses: true }), tracingDisabled: true });
    const agent = new Agent({ name: 'weather', instructions: 'Report the weather.', model, outputType: Weather, modelSettings: { temperature: 1 } });
    const result = await runner.run(agent, 'Weather in Paris?');
    expect(Weather.parse(result.finalOutput)).toBeTruthy();
  });
});

describe('reasoning (qwen3 parser on tiny-qwen3)', () => {
  let thinker: AsyncLLM;
  let thinkingServer: PagodaServer;
  let thinkingClient: OpenAI;
  beforeAll(async () => {
    thinker = await AsyncLLM.create(fixturePath('tiny-qwen3'), {
      kvCacheMemory: '32MiB',
      maxModelLen: 1024,
      intraOpNumThreads: 1,
      tokenizerPoolSize: 1,
      reasoningParser: 'qwen3',
      structuredOutputsConfig: { disableAnyWhitespace: true },
    });
    thinkingServer = createPagodaServer({ engine: thinker, servedModelName: 'tiny-qwen3', version: 'think', reasoningParser: 'qwen3' });
    thinkingClient = new OpenAI({ baseURL: `http://127.0.0.1:${(await thinkingServer.listen(0)).port}/v1`, apiKey: 'unused', maxRetries: 0 });
  }, 60_000);
  afterAll(async () => {
    await thinkingServer?.close();
    await thinker?.close();
  });

  it('splits <think>…</think> into reasoning_content, streamed and not', async () => {
    // Forced at every step, <think> (151667) opens a think block that never closes: all of the output is reasoning.
    const request = { model: 'tiny-qwen3', messages: user('Think'), max_tokens: 6, temperature: 0, logit_bias: { '151667': 100 } };
    const whole = await thinkingClient.chat.completions.create(request);
    const message = whole.choices[0]!.message as { content: string | null; reasoning_content?: string };
    expect(message.reasoning_content).toBeDefined();
    expect(message.content).toBeNull();
    let reasoning = '';
    for await (const chunk of await thinkingClient.chat.completions.create({ ...request, stream: true })) {
      reasoning += (chunk.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? '';
    }
    expect(reasoning).toBe(message.reasoning_content);
  });

  it('starts a JSON constraint only after </think>, which logit_bias forces', async () => {
    const completion = await thinkingClient.chat.completions.create({
      model: 'tiny-qwen3',
      messages: user('Weather?'),
      response_format: zodResponseFormat(Weather, 'weather'),
      logit_bias: { '151668': 100 },
      seed: 11,
    });
    const message = completion.choices[0]!.message;
    // Unconstrained, the model wrote </think> (a JSON grammar would have masked it); the JSON came after it.
    expect(completion.usage!.completion_tokens).toBeGreaterThan(1);
    expect(Weather.parse(JSON.parse(message.content!))).toBeTruthy();
  });
});

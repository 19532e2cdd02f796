/**
 * Property-based fuzzing of both generation endpoints against the real server (fast-check): whatever a body holds,
 * the answer is a 2xx or a 4xx, never a 5xx; every 400 is OpenAI-shaped and names a field the body has (or the one
 * it lacks); and the server serves on, with nothing left running.
 */
import { AsyncLLM } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPagodaServer, type ErrorBody, type PagodaServer } from './index';

const model = 'tiny-qwen2';
let engine: AsyncLLM;
let server: PagodaServer;
let baseUrl: string;

beforeAll(async () => {
  engine = await AsyncLLM.create(fixturePath(model), { kvCacheMemory: '8MiB', maxModelLen: 64, intraOpNumThreads: 1, tokenizerPoolSize: 1 });
  server = createPagodaServer({ engine, servedModelName: model, version: 'fuzz', trustRequestChatTemplate: true });
  baseUrl = `http://127.0.0.1:${(await server.listen(0)).port}`;
});

afterAll(async () => {
  await server?.close();
  await engine?.close();
});

/** Any JSON value, small. */
const anyJson = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }),
  fc.string({ maxLength: 12 }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.integer({ min: -5, max: 200_000 }), fc.string({ maxLength: 4 })), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.integer(), fc.string({ maxLength: 4 })), { maxKeys: 3 }),
);

/** Numbers just outside, and far outside, the ranges the sampling fields take. */
const badNumber = fc.oneof(fc.constantFrom(-1, -0.5, 0, 1.5, 2.5, 3, 129, 1e9, -1e9), fc.double({ noNaN: true, noDefaultInfinity: true }));

/** Every field valid (each present or not); the mutations below make some of them anything at all. */
const sampling = {
  model: fc.constant(model),
  max_tokens: fc.integer({ min: 2, max: 4 }),
  temperature: fc.double({ min: 0.1, max: 2, noNaN: true }),
  top_p: fc.double({ min: 0.05, max: 1, noNaN: true }),
  top_k: fc.oneof(fc.constant(-1), fc.integer({ min: 1, max: 50 })),
  min_p: fc.double({ min: 0, max: 1, noNaN: true }),
  repetition_penalty: fc.double({ min: 0.5, max: 2, noNaN: true }),
  frequency_penalty: fc.double({ min: -2, max: 2, noNaN: true }),
  presence_penalty: fc.double({ min: -2, max: 2, noNaN: true }),
  seed: fc.integer(),
  n: fc.integer({ min: 1, max: 3 }),
  stop: fc.oneof(fc.string({ minLength: 1, maxLength: 3 }), fc.array(fc.string({ minLength: 1, maxLength: 3 }), { maxLength: 3 })),
  stop_token_ids: fc.array(fc.integer({ min: 0, max: 151_935 }), { maxLength: 3 }),
  logit_bias: fc.dictionary(fc.integer({ min: 0, max: 151_935 }).map(String), fc.double({ min: -200, max: 200, noNaN: true }), { maxKeys: 3 }),
  min_tokens: fc.integer({ min: 0, max: 2 }),
  ignore_eos: fc.boolean(),
  stream: fc.boolean(),
  priority: fc.integer({ min: -5, max: 5 }),
  user: fc.string({ maxLength: 8 }),
  unknown_field: anyJson,
};

const completionFields = {
  ...sampling,
  prompt: fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), fc.array(fc.string({ minLength: 1, maxLength: 10 }), { minLength: 1, maxLength: 3 }), fc.array(fc.integer({ min: 0, max: 151_935 }), { minLength: 1, maxLength: 10 })),
  echo: fc.boolean(),
  logprobs: fc.integer({ min: 0, max: 5 }),
};

const message = fc.record({
  role: fc.constantFrom('system', 'user', 'assistant', 'tool'),
  content: fc.oneof(fc.string({ maxLength: 30 }), fc.array(fc.record({ type: fc.constant('text'), text: fc.string({ maxLength: 8 }) }), { maxLength: 2 })),
});

const chatFields = {
  ...sampling,
  messages: fc.array(message, { minLength: 1, maxLength: 3 }),
  max_completion_tokens: fc.integer({ min: 2, max: 4 }),
  logprobs: fc.boolean(),
  chat_template: fc.constant('{{ messages[0].content }}'),
  chat_template_kwargs: fc.dictionary(fc.constantFrom('enable_thinking', 'other'), fc.boolean(), { maxKeys: 2 }),
  add_generation_prompt: fc.boolean(),
};

/**
 * A body built from valid fields (the required one always there, others each present or not), then with up to
 * three fields set to anything: a wrong type, a number out of range, a missing required field, nonsense nesting.
 */
function bodies(fields: Record<string, fc.Arbitrary<unknown>>, required: string) {
  const names = Object.keys(fields);
  return fc
    .tuple(
      fc.record(fields, { requiredKeys: [required] }),
      fc.array(fc.tuple(fc.constantFrom(...names), fc.oneof(anyJson, badNumber, fc.constant(undefined))), { maxLength: 3 }),
    )
    .map(([body, mutations]) => {
      const mutated: Record<string, unknown> = { ...(body as Record<string, unknown>) };
      for (const [name, value] of mutations) {
        if (value === undefined) delete mutated[name];
        else mutated[name] = value;
      }
      if (mutated.stream !== true && 'stream_options' in mutated) delete mutated.stream_options;
      return mutated;
    });
}

const completionBody = bodies(completionFields, 'prompt');
const chatBody = bodies(chatFields, 'messages');

const statuses = new Map<number, number>();

async function send(path: string, body: Record<string, unknown>) {
  const response = await fetch(`${baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await response.text();
  statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
  return { status: response.status, text, contentType: response.headers.get('content-type') ?? '' };
}

function checkAnswer(body: Record<string, unknown>, required: string, answer: { status: number; text: string; contentType: string }) {
  expect(answer.status, answer.text).toBeLessThan(500);
  if (answer.status === 200) {
    if (answer.contentType.startsWith('text/event-stream')) {
      expect(answer.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      // An error found after the stream began travels in it, OpenAI-shaped; none may be a 5xx either.
      for (const event of answer.text.split('\n\n').filter((chunk) => chunk.startsWith('data: {'))) {
        const parsed = JSON.parse(event.slice(6)) as Partial<ErrorBody>;
        if (parsed.error !== undefined) expect(parsed.error.code).toBeLessThan(500);
      }
    }
    return;
  }
  const { error } = JSON.parse(answer.text) as ErrorBody;
  expect(typeof error.message).toBe('string');
  expect(error.code).toBe(answer.status);
  if (answer.status === 400 && error.param !== null) expect([...Object.keys(body), required, 'max_tokens']).toContain(error.param);
}

describe('fuzzing the generation endpoints over real HTTP', () => {
  it('answers any completions body with a 2xx or a 4xx naming a field of it', async () => {
    await fc.assert(
      fc.asyncProperty(completionBody, async (body) => checkAnswer(body, 'prompt', await send('/v1/completions', body))),
      { numRuns: 120, seed: 1 },
    );
  }, 120_000);

  it('answers any chat completions body with a 2xx or a 4xx naming a field of it', async () => {
    await fc.assert(
      fc.asyncProperty(chatBody, async (body) => checkAnswer(body, 'messages', await send('/v1/chat/completions', body))),
      { numRuns: 120, seed: 2 },
    );
  }, 120_000);

  it('got each kind of answer: completions streamed and not, and refusals', () => {
    console.log('statuses:', Object.fromEntries(statuses));
    expect(statuses.get(200) ?? 0).toBeGreaterThan(30);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(30);
  });

  it('still serves afterwards, with nothing running and no KV in use', async () => {
    expect((await fetch(`${baseUrl}/health`)).status).toBe(200);
    const deadline = Date.now() + 10_000;
    while ((engine.makeStats().numRunningRequests > 0 || engine.makeStats().kvCacheUsage > 0) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(engine.makeStats()).toMatchObject({ numRunningRequests: 0, numWaitingRequests: 0, kvCacheUsage: 0 });
  });
});

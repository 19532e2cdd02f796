import { fixturePath, readReference } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AsyncLLM, EngineDeadError } from './async-llm';
import type { RequestOutput } from './request-output';
import { collect } from './test-streams';

describe('AsyncLLM on tiny-llama', () => {
  const reference = readReference('tiny-llama');
  let engine: AsyncLLM;
  beforeAll(async () => {
    engine = await AsyncLLM.create(fixturePath('tiny-llama'), { kvCacheMemory: '8MiB', maxModelLen: 512, intraOpNumThreads: 1 });
  });
  afterAll(() => engine.close());

  it('streams deltas that add up to the reference greedy text, for concurrent requests', async () => {
    const streams = reference.prompts.map((prompt) =>
      collect(engine.generate({ prompt: prompt.ids, samplingParams: { temperature: 0, maxTokens: 24, ignoreEos: true } })),
    );
    const results = await Promise.all(streams);
    results.forEach((deltas, index) => {
      const expected = reference.prompts[index]!.greedy;
      expect(deltas.map((delta) => delta.outputs[0]!.text).join('')).toBe(expected.text_in_context);
      expect(deltas.flatMap((delta) => delta.outputs[0]!.tokenIds)).toEqual(expected.ids);
      expect(deltas.at(-1)!.finished).toBe(true);
      expect(deltas.at(-1)!.outputs[0]!.finishReason).toBe('length');
      expect(deltas.at(-1)!.metrics!.timeToFirstToken).toBeGreaterThan(0);
    });
  });

  it('aborts a request mid-stream and frees its blocks', async () => {
    const stream = engine.generate({ requestId: 'to-abort', prompt: 'Once upon a time', samplingParams: { maxTokens: 400, ignoreEos: true } });
    const deltas: RequestOutput[] = [];
    for await (const delta of stream) {
      deltas.push(delta);
      if (deltas.length === 3) engine.abort('to-abort');
    }
    expect(deltas.at(-1)!.outputs[0]!.finishReason).toBe('abort');
    expect(deltas.flatMap((delta) => delta.outputs[0]!.tokenIds).length).toBeLessThan(400);
    await waitFor(() => engine.makeStats().numRunningRequests === 0);
    expect(engine.makeStats().kvCacheUsage).toBe(0);
  });

  it('aborts a request whose consumer stops reading', async () => {
    let count = 0;
    for await (const delta of engine.generate({ prompt: 'Hello', samplingParams: { maxTokens: 400, ignoreEos: true } })) {
      count += delta.outputs[0]!.tokenIds.length;
      if (count >= 2) break;
    }
    await waitFor(() => engine.makeStats().numRunningRequests === 0 && engine.makeStats().kvCacheUsage === 0);
  });

  it('refuses invalid requests at once, naming the parameter', () => {
    expect(() => engine.generate({ prompt: 'hi', samplingParams: { temperature: 3 } })).toThrow('temperature must be in [0, 2], got 3');
    expect(() => engine.generate({})).toThrow('a request needs a prompt or messages');
  });

  it('tokenizes a text prompt in its tokenizer pool exactly as the reference does, and streams the same output', async () => {
    const prompt = reference.prompts[0]!;
    expect(await engine.encode(prompt.text)).toEqual(prompt.ids);
    expect(await engine.decode(prompt.ids, { skipSpecialTokens: false })).toBe(engine.tokenizer.decode(prompt.ids, { skipSpecialTokens: false }));
    const deltas = await collect(engine.generate({ prompt: prompt.text, samplingParams: { temperature: 0, maxTokens: 24, ignoreEos: true } }));
    expect(deltas.flatMap((delta) => delta.outputs[0]!.tokenIds)).toEqual(prompt.greedy.ids);
    expect(deltas[0]!.prompt).toBe(prompt.text);
  });

  it('refuses a prompt too long for the context whatever it tokenizes to, before tokenizing it', async () => {
    const huge = 'x'.repeat(engine.context.options.maxModelLen * engine.tokenizer.maxInputBytesPerToken + 1);
    await expect(engine.encode(huge)).rejects.toThrow(/maximum context length is 512 tokens\. However, your prompt comes to at least 513 tokens/);
    expect(() => engine.generate({ prompt: huge })).toThrow(/maximum context length/);
    // Under the byte bound but over the context once tokenized: the stream fails with the usual message.
    await expect(collect(engine.generate({ prompt: 'word '.repeat(600), samplingParams: { maxTokens: 1 } }))).rejects.toThrow(/maximum context length is 512 tokens/);
  });

  it('aborts a request while its prompt is being tokenized, ending its stream', async () => {
    const stream = engine.generate({ requestId: 'abort-early', prompt: 'Once upon a time '.repeat(20), samplingParams: { maxTokens: 8 } });
    engine.abort('abort-early');
    const deltas = await collect(stream);
    expect(deltas.at(-1)).toMatchObject({ finished: true, outputs: [{ finishReason: 'abort' }] });
    await waitFor(() => engine.makeStats().numRunningRequests === 0 && engine.makeStats().numWaitingRequests === 0);
  });
});

describe('AsyncLLM chat through its tokenizer pool', () => {
  let engine: AsyncLLM;
  beforeAll(async () => {
    engine = await AsyncLLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '8MiB', maxModelLen: 512, intraOpNumThreads: 1, tokenizerPoolSize: 1 });
  });
  afterAll(() => engine.close());

  it('renders and tokenizes messages as the tokenizer does on the calling thread, and generates from them', async () => {
    const messages = [{ role: 'user', content: 'What is paged attention?' }];
    const rendered = await engine.applyChatTemplate(messages);
    expect(rendered.prompt).toBe(engine.tokenizer.applyChatTemplate(messages));
    expect(rendered.promptTokenIds).toEqual(engine.tokenizer.encode(rendered.prompt, { addSpecialTokens: false }));
    const fromMessages = await collect(engine.generate({ messages, samplingParams: { temperature: 0, maxTokens: 8, ignoreEos: true } }));
    const fromIds = await collect(engine.generate({ prompt: rendered.promptTokenIds, samplingParams: { temperature: 0, maxTokens: 8, ignoreEos: true } }));
    expect(fromMessages.flatMap((delta) => delta.outputs[0]!.tokenIds)).toEqual(fromIds.flatMap((delta) => delta.outputs[0]!.tokenIds));
  });

  it('fails the stream of a chat whose template fails', async () => {
    const stream = engine.generate({ messages: [{ role: 'user', content: 'x' }], chatTemplateOptions: { chatTemplate: '{{ raise_exception("no thanks") }}' } });
    await expect(collect(stream)).rejects.toThrow(/no thanks/);
  });
});

describe('AsyncLLM when the engine core dies', () => {
  it('fails every waiting caller with EngineDeadError and reports itself dead, never hanging', async () => {
    const engine = await AsyncLLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '4MiB', maxModelLen: 512, intraOpNumThreads: 1 });
    const streams = [0, 1].map((index) =>
      collect(engine.generate({ prompt: `request ${index}`, samplingParams: { maxTokens: 400, ignoreEos: true } })),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The core's loop throws before its next step and its thread exits, as a real crash would.
    (engine as unknown as { worker: { postMessage(message: unknown): void } }).worker.postMessage({ type: 'inject-fault', message: 'injected fault' });
    for (const stream of streams) await expect(stream).rejects.toBeInstanceOf(EngineDeadError);
    await expect(streams[0]).rejects.toThrow('the engine core failed: injected fault');
    expect(engine.health()).toBe('dead');
    expect(() => engine.generate({ prompt: 'again' })).toThrow(EngineDeadError);
    await engine.close();
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

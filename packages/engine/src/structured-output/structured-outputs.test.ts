import { fixturePath, readReference } from '@pagoda/fixtures';
import type { SamplingParams } from '@pagoda/sampling';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AsyncLLM } from '../core/async-llm';
import { LLM } from '../core/llm';
import { StructuredOutputError } from '../errors';
import { isJsonPrefix, satisfiesSchema } from './test-json';

// Random weights almost never close a free-form string, so the schemas bound every value.
const bounded = {
  type: 'object',
  properties: {
    color: { enum: ['red', 'green', 'blue'] },
    ok: { type: 'boolean' },
    count: { type: 'integer', minimum: 0, maximum: 99 },
    tag: { type: 'string', maxLength: 3 },
  },
  required: ['color', 'ok', 'count', 'tag'],
  additionalProperties: false,
} as const;

// XGrammar 0.1.27 turns maxLength into `[^"\\\r\n]{0,n}`, which lets raw control characters through (invalid JSON)
// and escapes not at all; Llama 2's vocabulary has such tokens (id 31150 is U+001E), so its test bounds by pattern.
const boundedByPattern = {
  ...bounded,
  properties: { ...bounded.properties, tag: { type: 'string', pattern: '^[a-z]{0,3}$' } },
} as const;

const compact = { structuredOutputsConfig: { disableAnyWhitespace: true } };

function expectValid(text: string, schema: Record<string, unknown> = bounded): void {
  let parsed: unknown;
  expect(() => (parsed = JSON.parse(text)), text).not.toThrow();
  expect(satisfiesSchema(parsed, schema), text).toBe(true);
}

describe('structured outputs on tiny-qwen2 (random weights, byte-level vocabulary of 151,936)', () => {
  let llm: LLM;
  beforeAll(async () => {
    llm = await LLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '16MiB', maxModelLen: 512, intraOpNumThreads: 1, ...compact });
  });
  afterAll(() => llm.close());

  it('gives n = 3 seeded samples that parse and validate against a bounded schema, each ending at EOS', async () => {
    const params: SamplingParams = { n: 3, temperature: 1, seed: 7, maxTokens: 60, structuredOutputs: { json: bounded } };
    const [output] = await llm.generate(['Describe a thing:'], params);
    expect(output!.outputs).toHaveLength(3);
    for (const completion of output!.outputs) {
      expectValid(completion.text);
      expect(completion.finishReason).toBe('stop');
    }
    // Seeded: the same request gives the same samples again, the matcher state following the tokens exactly.
    const [again] = await llm.generate(['Describe a thing:'], params);
    expect(again!.outputs.map((completion) => completion.tokenIds)).toEqual(output!.outputs.map((completion) => completion.tokenIds));
  });

  it('takes the schema as JSON text too, and greedy decoding obeys it as well', async () => {
    const [output] = await llm.generate(['x'], { temperature: 0, maxTokens: 60, structuredOutputs: { json: JSON.stringify(bounded) } });
    expectValid(output!.outputs[0]!.text);
  });

  it('cut by max_tokens, an unbounded schema and json_object still give a valid JSON prefix', async () => {
    const unbounded = { type: 'object', properties: { text: { type: 'string' }, items: { type: 'array', items: { type: 'number' } } }, required: ['text', 'items'] };
    const outputs = await llm.generate(
      ['a', 'b', 'c', 'd'],
      [
        { temperature: 1, seed: 1, maxTokens: 12, structuredOutputs: { json: unbounded } },
        { temperature: 1, seed: 2, maxTokens: 12, structuredOutputs: { json: unbounded } },
        { temperature: 1, seed: 3, maxTokens: 12, structuredOutputs: { jsonObject: true } },
        { temperature: 0, maxTokens: 12, structuredOutputs: { jsonObject: true } },
      ],
    );
    for (const output of outputs) {
      const completion = output.outputs[0]!;
      expect(completion.text.startsWith('{'), completion.text).toBe(true);
      if (completion.finishReason === 'length') expect(isJsonPrefix(completion.text), completion.text).toBe(true);
      else expect(() => JSON.parse(completion.text)).not.toThrow();
    }
    expect(outputs.some((output) => output.outputs[0]!.finishReason === 'length')).toBe(true);
  });

  it('follows a regex, a choice and an EBNF grammar', async () => {
    const [regex, choice, grammar] = await llm.generate(
      ['r', 'c', 'g'],
      [
        { temperature: 1, seed: 4, maxTokens: 20, structuredOutputs: { regex: '[a-c]{2}-[0-9]{1,2}' } },
        { temperature: 1, seed: 5, maxTokens: 20, structuredOutputs: { choice: ['always', 'never', 'sometimes "quoted"'] } },
        { temperature: 1, seed: 6, maxTokens: 20, structuredOutputs: { grammar: 'root ::= "(" digit ("+" digit)* ")"\ndigit ::= [1-3]' } },
      ],
    );
    expect(regex!.outputs[0]!.text).toMatch(/^[a-c]{2}-[0-9]{1,2}$/);
    expect(['always', 'never', 'sometimes "quoted"']).toContain(choice!.outputs[0]!.text);
    const expression = grammar!.outputs[0]!;
    // The repetition never has to end: cut by length, it is a prefix of the language.
    if (expression.finishReason === 'stop') expect(expression.text).toMatch(/^\([1-3](\+[1-3])*\)$/);
    else expect(expression.text).toMatch(/^\([1-3](\+[1-3])*\+?$/);
  });

  it('stops at a stop string inside a constrained output, and frees the request', async () => {
    const [output] = await llm.generate(['s'], { temperature: 0, maxTokens: 60, stop: ['"ok"'], structuredOutputs: { json: bounded } });
    expect(output!.outputs[0]!.finishReason).toBe('stop');
    expect(output!.outputs[0]!.stopReason).toBe('"ok"');
    expect(isJsonPrefix(output!.outputs[0]!.text)).toBe(true);
    expect(llm.core.hasUnfinishedRequests()).toBe(false);
  });

  it('refuses a schema XGrammar cannot compile, naming the field; the next constrained request still works', async () => {
    const bad = { json: { type: 'object', properties: { x: { type: 'nonsense' } } } };
    const failure = await llm.generate(['x'], { maxTokens: 8, structuredOutputs: bad }).catch((error: unknown) => error);
    expect(StructuredOutputError.isInstance(failure)).toBe(true);
    expect((failure as StructuredOutputError).param).toBe('structured_outputs.json');
    expect((failure as Error).message).toContain('nonsense');
    // Known bad: refused at once, without compiling again.
    await expect(llm.generate(['x'], { maxTokens: 8, structuredOutputs: bad })).rejects.toThrow(/nonsense/);
    const [output] = await llm.generate(['x'], { temperature: 1, seed: 9, maxTokens: 60, structuredOutputs: { json: bounded } });
    expectValid(output!.outputs[0]!.text);
    expect(llm.core.structuredOutput!.stats.workerRestarts).toBeGreaterThan(0);
  });
});

describe('structured outputs in a busy batch on tiny-llama (byte-fallback vocabulary): preemption and recompute', () => {
  const reference = readReference('tiny-llama');
  let busy: LLM;
  beforeAll(async () => {
    // As llm.test.ts's busy run: 40 blocks of 16 tokens are too few for 16 requests, so some are preempted.
    busy = await LLM.create(fixturePath('tiny-llama'), {
      kvCacheMemory: 40 * 16 * 512,
      maxModelLen: 460,
      maxNumBatchedTokens: 64,
      maxNumSeqs: 16,
      intraOpNumThreads: 1,
      ...compact,
    });
  });
  afterAll(() => busy.close());

  it('keeps constrained outputs valid and unconstrained ones unchanged while requests are preempted', async () => {
    const prompts = Array.from({ length: 16 }, (_, index) => reference.prompts[index % 3]!.ids);
    const params: SamplingParams[] = prompts.map((_, index) =>
      index % 2 === 0
        ? { temperature: 0.9, seed: 500 + index, maxTokens: 80, structuredOutputs: { json: boundedByPattern } }
        : { temperature: 0, maxTokens: 24, ignoreEos: true },
    );
    const together = await busy.generate(prompts, params);
    expect(busy.makeStats().numPreemptionsTotal).toBeGreaterThan(0);
    for (let index = 0; index < prompts.length; index += 1) {
      const completion = together[index]!.outputs[0]!;
      if (index % 2 === 0) {
        expectValid(completion.text, boundedByPattern);
        // Seeded: alone, it samples the same tokens (the mask depends only on its own tokens).
        const [alone] = await busy.generate([prompts[index]!], params[index]);
        expect(alone!.outputs[0]!.tokenIds).toEqual(completion.tokenIds);
      } else {
        expect(completion.tokenIds).toEqual(reference.prompts[index % 3]!.greedy.ids);
      }
    }
  });
});

describe('structured outputs streamed by AsyncLLM on tiny-qwen2', () => {
  let engine: AsyncLLM;
  beforeAll(async () => {
    engine = await AsyncLLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '16MiB', maxModelLen: 512, intraOpNumThreads: 1, ...compact });
  });
  afterAll(() => engine.close());

  async function collect(samplingParams: SamplingParams): Promise<{ text: string; deltas: number; finishReason: string | undefined }> {
    let text = '';
    let deltas = 0;
    let finishReason: string | undefined;
    for await (const delta of engine.generate({ prompt: 'Stream:', samplingParams })) {
      text += delta.outputs[0]?.text ?? '';
      deltas += 1;
      finishReason = delta.outputs[0]?.finishReason ?? finishReason;
    }
    return { text, deltas, finishReason };
  }

  it('streams deltas that join into valid output, while a bad schema fails only its own request', async () => {
    const good = collect({ temperature: 1, seed: 21, maxTokens: 60, structuredOutputs: { json: bounded } });
    const bad = collect({ maxTokens: 8, structuredOutputs: { regex: '([' } }).catch((error: unknown) => error);
    const free = collect({ temperature: 0, maxTokens: 10, ignoreEos: true });
    const [goodResult, badResult, freeResult] = await Promise.all([good, bad, free]);
    expectValid(goodResult.text);
    expect(goodResult.deltas).toBeGreaterThan(3);
    expect(goodResult.finishReason).toBe('stop');
    expect((badResult as { code?: string }).code).toBe('invalid_structured_outputs');
    expect((badResult as { param?: string }).param).toBe('structured_outputs.regex');
    expect(freeResult.finishReason).toBe('length');
  });
});

describe('reasoning (qwen3 parser) on tiny-qwen3: constraints start after </think>', () => {
  const endOfThinking = 151668;
  let llm: LLM;
  beforeAll(async () => {
    llm = await LLM.create(fixturePath('tiny-qwen3'), { kvCacheMemory: '16MiB', maxModelLen: 512, intraOpNumThreads: 1, reasoningParser: 'qwen3', ...compact });
  });
  afterAll(() => llm.close());

  it('leaves the reasoning free, and constrains what follows </think> (forced with logit_bias)', async () => {
    // The bias makes </think> the first token; after it the grammar masks </think>, bias or not.
    const [output] = await llm.generate(['Think:'], { temperature: 1, seed: 3, maxTokens: 60, logitBias: { [endOfThinking]: 100 }, structuredOutputs: { json: bounded } });
    const tokenIds = output!.outputs[0]!.tokenIds;
    expect(tokenIds[0]).toBe(endOfThinking);
    expect(tokenIds.slice(1)).not.toContain(endOfThinking);
    expectValid(llm.tokenizer.decode(tokenIds.slice(1)));
  });

  it('never constrains the reasoning itself: without </think> the output is free', async () => {
    const [output] = await llm.generate(['Think:'], { temperature: 0, maxTokens: 8, logitBias: { 0: 100 }, structuredOutputs: { json: bounded } });
    // Token 0 (`!`) is no JSON object's start, so only an unconstrained step could pick it.
    expect(output!.outputs[0]!.tokenIds).toEqual(new Array(8).fill(0));
  });

  it('constrains from the first token when the prompt already closed the reasoning', async () => {
    const prompt = llm.tokenizer.encode('<think>\n\n</think>\n\n', { addSpecialTokens: false });
    expect(prompt).toContain(endOfThinking);
    const [output] = await llm.generate([prompt], { temperature: 0, maxTokens: 60, logitBias: { 0: 100 }, structuredOutputs: { json: bounded } });
    expectValid(output!.outputs[0]!.text);
  });
});

import type { CompletionOutput, RequestOutput } from '@pagoda/engine';
import { randomUUID } from 'node:crypto';
import { admitted, checkModel, checkSamplingFields, drive, type HandlerContext, now, startRequests, usageOf } from './generation';
import { ApiError } from './http-error';
import { completionLogprobs } from './logprobs';
import { readGenerationFields, readPrompts } from './protocol';
import type { CompletionRequest } from './schemas';
import type { ResponseSink } from './sink';

/** POST /v1/completions */
export async function handleCompletions(context: HandlerContext, body: CompletionRequest, sink: ResponseSink): Promise<void> {
  checkModel(context, body.model);
  if (body.suffix !== undefined && body.suffix !== null) throw new ApiError(400, 'suffix is not supported', 'suffix');
  const fields = readGenerationFields(body, { chat: false });
  const { n } = checkSamplingFields(context, fields);
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== n) {
    throw new ApiError(
      400,
      body.best_of < n
        ? `best_of must be at least n (${n}), got ${body.best_of}`
        : `best_of ${body.best_of} > n is not supported (vLLM V1 dropped it too): ask for n completions and pick by their logprobs`,
      'best_of',
    );
  }
  const echo = body.echo ?? false;
  const { engine } = context;
  const prompts = readPrompts(body);
  const { requests, promptTexts, id } = await admitted(context, prompts.length * n, async () => {
    // Text prompts are tokenized together, off the event loop, under one time budget; token ids pass as they are.
    const texts = prompts.filter((prompt): prompt is string => typeof prompt === 'string');
    const encoded = texts.length === 0 ? [] : await engine.encodeAll(texts, { addSpecialTokens: body.add_special_tokens ?? true, signal: sink.signal });
    let next = 0;
    const tokenized = prompts.map((prompt) => (typeof prompt === 'string' ? encoded[next++]! : prompt));
    const id = `cmpl-${randomUUID().replace(/-/g, '')}`;
    // The echoed text of a token-id prompt is its decoding, also made off the event loop.
    const promptTexts = echo
      ? await Promise.all(prompts.map((prompt) => (typeof prompt === 'string' ? prompt : engine.decode(prompt, { signal: sink.signal }))))
      : prompts.map(() => '');
    return { requests: startRequests(context, tokenized, fields, id), promptTexts, id };
  });
  const created = now();
  const { tokenizer } = engine.context;
  const offsets = prompts.map(() => new Map<number, number>());
  const legacyLogprobs = (index: number, completion: CompletionOutput) => {
    if (completion.logprobs === undefined) return null;
    const start = offsets[index]!.get(completion.index) ?? 0;
    const result = completionLogprobs(tokenizer, completion.logprobs, start);
    offsets[index]!.set(completion.index, result.end);
    return result.logprobs;
  };
  const choice = (index: number, completion: CompletionOutput, text: string) => ({
    index: index * n + completion.index,
    text,
    logprobs: legacyLogprobs(index, completion),
    finish_reason: completion.finishReason ?? null,
    stop_reason: completion.stopReason ?? null,
  });

  if (!fields.stream) {
    const finals = await drive(context, sink, requests, n, () => undefined, fields);
    if (sink.signal.aborted) return;
    sink.json(200, {
      id,
      object: 'text_completion',
      created,
      model: context.servedModelName,
      choices: finals.flatMap((output, index) => output.outputs.map((completion) => choice(index, completion, promptTexts[index] + completion.text))),
      usage: usageOf(finals),
    });
    return;
  }

  const echoed = prompts.map(() => new Set<number>());
  const onDelta = (index: number, delta: RequestOutput) => {
    for (const completion of delta.outputs) {
      let text = completion.text;
      if (echo && !echoed[index]!.has(completion.index)) {
        echoed[index]!.add(completion.index);
        text = promptTexts[index] + text;
      }
      sink.event({ id, object: 'text_completion', created, model: context.servedModelName, choices: [choice(index, completion, text)] });
    }
  };
  const finals = await drive(context, sink, requests, n, onDelta, fields);
  if (sink.signal.aborted) return;
  if (fields.includeUsage) sink.event({ id, object: 'text_completion', created, model: context.servedModelName, choices: [], usage: usageOf(finals) });
  sink.done();
}

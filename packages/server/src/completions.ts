import type { CompletionOutput, RequestOutput } from '@pagoda/engine';
import { randomUUID } from 'node:crypto';
import { admitted, checkModel, checkSamplingFields, drive, type HandlerContext, now, startRequests, usageOf } from './generation';
import { ApiError } from './http-error';
import { completionLogprobs, type LegacyToken, promptLogprobsField } from './logprobs';
import { readGenerationFields, readPrompts } from './protocol';
import type { CompletionRequest } from './schemas';
import type { ResponseSink } from './sink';

/** POST /v1/completions */
export async function handleCompletions(context: HandlerContext, body: CompletionRequest, sink: ResponseSink): Promise<void> {
  checkModel(context, body.model);
  if (body.suffix !== undefined && body.suffix !== null) throw new ApiError(400, 'suffix is not supported', 'suffix');
  const echo = body.echo ?? false;
  const baseFields = readGenerationFields(body, { chat: false });
  const logprobs = baseFields.samplingParams.logprobs ?? null;
  // OpenAI's echo with logprobs scores the echoed prompt too (lm-evaluation-harness sums those): prompt logprobs.
  const scoring = echo && logprobs !== null;
  const fields = scoring
    ? { ...baseFields, samplingParams: { ...baseFields.samplingParams, promptLogprobs: Math.max(logprobs, baseFields.samplingParams.promptLogprobs ?? 0) } }
    : baseFields;
  if (fields.maxTokens === 0 && !echo) {
    throw new ApiError(400, 'max_tokens must be at least 1, got 0 (0 only with echo: it scores the prompt and generates nothing)', 'max_tokens');
  }
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
  const { engine } = context;
  const prompts = readPrompts(body);
  const { requests, promptTexts, tokenized, id } = await admitted(context, prompts.length * n, async () => {
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
    return { requests: startRequests(context, tokenized, fields, id), promptTexts, tokenized, id };
  });
  const created = now();
  const { tokenizer } = engine.context;
  const offsets = prompts.map(() => new Map<number, number>());
  /** Each prompt's scores, once its output brings them (with its first delta). */
  const promptScores = prompts.map((): RequestOutput['promptLogprobs'] => undefined);
  /**
   * A choice's legacy logprobs for its new tokens; in its first delta with echo, its prompt's tokens come first
   * (the first one unscored), and text offsets count from the start of the returned text.
   */
  const legacyLogprobs = (index: number, completion: CompletionOutput, withPrompt: boolean) => {
    if (logprobs === null) return null;
    const entries: LegacyToken[] = (completion.logprobs ?? []).map((entry) => ({ tokenId: entry.tokenId, logprobs: entry }));
    if (withPrompt) entries.unshift(...tokenized[index]!.map((tokenId, position) => ({ tokenId, logprobs: promptScores[index]?.[position] ?? null })));
    const result = completionLogprobs(tokenizer, entries, offsets[index]!.get(completion.index) ?? 0, logprobs);
    offsets[index]!.set(completion.index, result.end);
    return result.logprobs;
  };
  const echoed = prompts.map(() => new Set<number>());
  const choice = (index: number, completion: CompletionOutput) => {
    const first = echo && !echoed[index]!.has(completion.index);
    if (first) echoed[index]!.add(completion.index);
    return {
      index: index * n + completion.index,
      text: (first ? promptTexts[index] : '') + completion.text,
      logprobs: legacyLogprobs(index, completion, first),
      finish_reason: completion.finishReason ?? null,
      stop_reason: completion.stopReason ?? null,
      ...(fields.samplingParams.promptLogprobs == null || (echo && !first) ? {} : { prompt_logprobs: promptLogprobsField(tokenizer, promptScores[index]) }),
    };
  };

  if (!fields.stream) {
    const finals = await drive(context, sink, requests, n, () => undefined, fields);
    if (sink.signal.aborted) return;
    finals.forEach((output, index) => (promptScores[index] = output.promptLogprobs));
    sink.json(200, {
      id,
      object: 'text_completion',
      created,
      model: context.servedModelName,
      choices: finals.flatMap((output, index) => output.outputs.map((completion) => choice(index, completion))),
      usage: usageOf(finals),
    });
    return;
  }

  const onDelta = (index: number, delta: RequestOutput) => {
    if (delta.promptLogprobs !== undefined) promptScores[index] = delta.promptLogprobs;
    for (const completion of delta.outputs) {
      sink.event({ id, object: 'text_completion', created, model: context.servedModelName, choices: [choice(index, completion)] });
    }
  };
  const finals = await drive(context, sink, requests, n, onDelta, fields);
  if (sink.signal.aborted) return;
  if (fields.includeUsage) sink.event({ id, object: 'text_completion', created, model: context.servedModelName, choices: [], usage: usageOf(finals) });
  sink.done();
}

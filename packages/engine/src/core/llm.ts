import type { SamplingParams } from '@pagoda/sampling';
import type { ChatMessage, ChatTemplateOptions } from '../frontend/text-tokenizer';
import type { EngineCore } from './engine-core';
import type { EngineOptions } from './engine-options';
import { createEngineCore, loadModelContext, type ModelContext, prepareRequest, type PromptInput, renderChat, runnerMismatch } from './engine-setup';
import { OutputProcessor, stopStringStatus } from './output-processor';
import type { CompletionOutput, EngineStats, RequestOutput } from './request-output';

/**
 * Offline inference: a batch of prompts in, one finished output per prompt out, in input order, with continuous
 * batching inside. The engine core runs in this thread (use `AsyncLLM` to keep an event loop free).
 *
 * ```ts
 * const llm = await LLM.create('./my-model', { maxNumSeqs: 64 });
 * const [output] = await llm.generate(['The capital of France is'], { temperature: 0, maxTokens: 16 });
 * output.outputs[0].text;
 * await llm.close();
 * ```
 */
export class LLM {
  private queue: Promise<unknown> = Promise.resolve();
  /** One for the LLM's lifetime, so engine-core request ids are never reused. */
  private readonly processor: OutputProcessor;
  private nextRequestId = 0;
  private closed = false;

  private constructor(
    readonly context: ModelContext,
    readonly core: EngineCore,
  ) {
    this.processor = new OutputProcessor(context.tokenizer);
  }

  static async create(model: string, options: EngineOptions = {}): Promise<LLM> {
    const context = await loadModelContext(model, options);
    const core = await createEngineCore(context);
    return new LLM({ ...context, options: { ...context.options, kvCache: core.kvCache } }, core);
  }

  get tokenizer() {
    return this.context.tokenizer;
  }

  /** Generates for each prompt (text or token ids); `params` is shared or given per prompt. */
  generate(prompts: PromptInput | readonly PromptInput[], params?: SamplingParams | readonly SamplingParams[]): Promise<RequestOutput[]> {
    const refused = runnerMismatch(this.context, 'generate');
    if (refused !== undefined) return Promise.reject(refused);
    const inputs = isPromptList(prompts) ? prompts : [prompts];
    return this.run(inputs.map((input, index) => ({ input, params: Array.isArray(params) ? params[index] : (params as SamplingParams | undefined) })));
  }

  /**
   * A pooling model's vector for each prompt (vLLM's `LLM.embed`): the final norm's hidden states pooled as the
   * pooler config says, in one batch.
   */
  async embed(prompts: PromptInput | readonly PromptInput[]): Promise<number[][]> {
    const refused = runnerMismatch(this.context, 'embed');
    if (refused !== undefined) throw refused;
    const inputs = isPromptList(prompts) ? prompts : [prompts];
    const outputs = await this.run(inputs.map((input) => ({ input, params: { maxTokens: 0 } })));
    return outputs.map((output) => [...output.embedding!]);
  }

  /** Chat: renders each conversation with the model's chat template, then generates. */
  chat(
    conversations: readonly ChatMessage[] | readonly (readonly ChatMessage[])[],
    params?: SamplingParams,
    options: ChatTemplateOptions = {},
  ): Promise<RequestOutput[]> {
    const list = (Array.isArray(conversations[0]) ? conversations : [conversations]) as readonly (readonly ChatMessage[])[];
    return this.run(
      list.map((messages) => ({ input: renderChat(this.context, messages, options), params, addSpecialTokens: false })),
    );
  }

  /** Running, waiting, KV usage, preemptions, prefix-cache queries and hits, tokens in and out. */
  makeStats(): EngineStats {
    return { ...this.core.makeStats(), ...this.processor.totals };
  }

  /** Frees the model and the KV cache. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.catch(() => undefined);
    await this.core.shutdown();
  }

  private run(items: Array<{ input: PromptInput; params: SamplingParams | undefined; addSpecialTokens?: boolean }>): Promise<RequestOutput[]> {
    if (this.closed) return Promise.reject(new Error('this LLM is closed'));
    // Calls take turns: one engine core, one loop at a time.
    const result = this.queue.then(() => this.runBatch(items));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async runBatch(items: Array<{ input: PromptInput; params: SamplingParams | undefined; addSpecialTokens?: boolean }>): Promise<RequestOutput[]> {
    // Validate everything before anything runs: one bad prompt fails the call, not half of it.
    const requests = items.map((item) =>
      prepareRequest(this.context, `llm-${this.nextRequestId++}`, item.input, item.params, { addSpecialTokens: item.addSpecialTokens ?? true }),
    );
    const processor = this.processor;
    const finals = new Map<string, RequestOutput>();
    try {
      // Inside the try: the core may refuse one (a constraint known not to compile), and none may stay behind.
      for (const request of requests) for (const coreRequest of processor.addRequest(request)) this.core.addRequest(coreRequest);
      while (processor.numUnfinishedRequests > 0) {
        const processed = processor.processOutputs(await this.core.step());
        // A grammar that did not compile ended its request in the core: the call fails, as for any invalid input.
        const [failure] = this.core.takeRequestErrors();
        if (failure !== undefined) throw failure.error;
        if (processed.requestsToStop.length > 0) this.core.finishRequests(processed.requestsToStop, stopStringStatus);
        for (const coreRequest of processed.requestsToAdd) this.core.addRequest(coreRequest);
        for (const delta of processed.deltas) finals.set(delta.requestId, accumulate(finals.get(delta.requestId), delta));
      }
    } catch (error) {
      // A failed step (the model run threw) or a refused request leaves no request behind in the core.
      this.core.finishRequests(requests.flatMap((request) => processor.abortRequest(request.requestId)?.coreRequestIds ?? []));
      throw error;
    }
    return requests.map((request) => finals.get(request.requestId)!);
  }
}

function isPromptList(prompts: PromptInput | readonly PromptInput[]): prompts is readonly PromptInput[] {
  return Array.isArray(prompts) && (prompts.length === 0 || typeof prompts[0] !== 'number');
}

/** Folds a delta into the request's output so far. */
export function accumulate(previous: RequestOutput | undefined, delta: RequestOutput): RequestOutput {
  if (previous === undefined) return delta;
  const outputs = new Map<number, CompletionOutput>(previous.outputs.map((output) => [output.index, output]));
  for (const output of delta.outputs) {
    const before = outputs.get(output.index);
    outputs.set(
      output.index,
      before === undefined
        ? output
        : {
            index: output.index,
            text: before.text + output.text,
            tokenIds: [...before.tokenIds, ...output.tokenIds],
            logprobs: before.logprobs === undefined ? output.logprobs : [...before.logprobs, ...(output.logprobs ?? [])],
            finishReason: output.finishReason,
            stopReason: output.stopReason,
          },
    );
  }
  const promptLogprobs = delta.promptLogprobs ?? previous.promptLogprobs;
  return {
    ...delta,
    outputs: [...outputs.values()].sort((left, right) => left.index - right.index),
    ...(promptLogprobs === undefined ? {} : { promptLogprobs }),
  };
}

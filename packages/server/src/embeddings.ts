import { type EmbeddingOutput, truncateEmbedding } from '@pagoda/engine';
import { randomUUID } from 'node:crypto';
import { admitted, checkModel, type HandlerContext, now } from './generation';
import { ApiError } from './http-error';
import type { EmbeddingRequest } from './schemas';
import type { ResponseSink } from './sink';

/** OpenAI's limit on inputs in one embeddings request. */
export const maxEmbeddingInputs = 2048;

/** The request's inputs, each a text or token ids; refuses an empty list, an empty text and an empty id array. */
function readInputs(input: EmbeddingRequest['input']): Array<string | number[]> {
  // A flat array of numbers is one tokenized input; an array of arrays, several.
  const list: Array<string | number[]> =
    typeof input === 'string' ? [input] : input.length > 0 && typeof input[0] === 'number' ? [input as number[]] : (input as Array<string | number[]>);
  if (list.length === 0) throw new ApiError(400, 'input must not be empty', 'input');
  if (list.length > maxEmbeddingInputs) {
    throw new ApiError(400, `input has ${list.length} entries, more than the ${maxEmbeddingInputs} one request may embed`, 'input');
  }
  list.forEach((entry, index) => {
    if (entry.length === 0) throw new ApiError(400, `input[${index}] is empty`, 'input');
  });
  return list;
}

/** OpenAI's base64 encoding: the float32 little-endian bytes of the vector. */
function base64Of(vector: readonly number[]): string {
  return Buffer.from(Float32Array.from(vector).buffer).toString('base64');
}

/**
 * POST /v1/embeddings on a pooling model (`--runner pooling`): one vector per input, each input a request of its
 * own through the scheduler (batched with whatever else runs), as vLLM's pooling runner serves them.
 */
export async function handleEmbeddings(context: HandlerContext, body: EmbeddingRequest, sink: ResponseSink): Promise<void> {
  checkModel(context, body.model);
  const { engine } = context;
  const { options, modelConfig } = engine.context;
  if (options.runner !== 'pooling' || options.pooler === undefined) {
    throw new ApiError(400, `The model \`${context.servedModelName}\` does not support the Embeddings API: serve it with --runner pooling`, 'model');
  }
  const format = body.encoding_format ?? 'float';
  const dimensions = body.dimensions ?? undefined;
  if (dimensions !== undefined && (dimensions < 1 || dimensions > modelConfig.hiddenSize)) {
    throw new ApiError(400, `dimensions must be in [1, ${modelConfig.hiddenSize}] (the model's hidden size), got ${dimensions}`, 'dimensions');
  }
  const truncateTo = body.truncate_prompt_tokens ?? undefined;
  if (truncateTo !== undefined && (truncateTo === 0 || truncateTo < -1 || truncateTo > options.maxModelLen)) {
    throw new ApiError(400, `truncate_prompt_tokens must be -1 (max_model_len) or in [1, ${options.maxModelLen}], got ${truncateTo}`, 'truncate_prompt_tokens');
  }
  const inputs = readInputs(body.input);
  const stop = new AbortController();
  const onClientGone = () => stop.abort();
  sink.signal.addEventListener('abort', onClientGone, { once: true });
  try {
    const outputs = await admitted(context, inputs.length, async () => {
      // Texts are tokenized together, off the event loop, under one time budget; token ids pass as they are.
      const texts = inputs.filter((input): input is string => typeof input === 'string');
      const encoded = texts.length === 0 ? [] : await engine.encodeAll(texts, { signal: sink.signal }).catch((error: unknown) => {
        throw renameToInput(error);
      });
      let next = 0;
      const tokenized = inputs.map((input) => {
        const ids = typeof input === 'string' ? encoded[next++]! : input;
        // vLLM's truncate_prompt_tokens keeps the last tokens.
        return truncateTo === undefined ? ids : ids.slice(-(truncateTo === -1 ? options.maxModelLen : truncateTo));
      });
      // Every input is checked before any runs: one bad input fails the request, not half of it.
      tokenized.forEach((ids, index) => {
        if (ids.length > options.maxModelLen) {
          throw new ApiError(
            400,
            `This model's maximum context length is ${options.maxModelLen} tokens. However, input[${index}] has ${ids.length} tokens. Please reduce the length of the input.`,
            'input',
          );
        }
        const bad = ids.find((id) => id >= modelConfig.vocabSize);
        if (bad !== undefined) throw new ApiError(400, `input[${index}] holds token id ${bad}, outside the vocabulary [0, ${modelConfig.vocabSize})`, 'input');
      });
      const id = `embd-${randomUUID().replace(/-/g, '')}`;
      // Each input waits until its vector is made; then it no longer counts against --max-waiting-requests.
      const running = tokenized.map((ids, index) =>
        engine
          .embed({ requestId: `${id}-${index}`, prompt: ids, signal: stop.signal, ...(body.priority == null ? {} : { priority: body.priority }) })
          .finally(() => context.admission.release(1)),
      );
      return { id, running };
    });
    let results: EmbeddingOutput[];
    try {
      results = await Promise.all(outputs.running);
    } catch (error) {
      stop.abort();
      await Promise.allSettled(outputs.running);
      if (sink.signal.aborted) {
        // Cut by the drain deadline: its 503. A client that left has nobody to answer.
        if (sink.signal.reason instanceof ApiError) throw sink.signal.reason;
        return;
      }
      throw renameToInput(error);
    }
    const data = results.map((result, index) => {
      const vector = dimensions === undefined ? result.embedding : truncateEmbedding(result.embedding, dimensions, options.pooler!.normalize);
      return { index, object: 'embedding', embedding: format === 'base64' ? base64Of(vector) : vector };
    });
    const promptTokens = results.reduce((sum, result) => sum + result.promptTokenIds.length, 0);
    sink.json(200, {
      id: outputs.id,
      object: 'list',
      created: now(),
      model: context.servedModelName,
      data,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  } finally {
    sink.signal.removeEventListener('abort', onClientGone);
  }
}

/** An engine error about `prompt` named as this endpoint names it: `input`. */
function renameToInput(error: unknown): unknown {
  if (error instanceof Error && (error as { param?: unknown }).param === 'prompt') {
    return new ApiError(400, error.message.replace(/\bprompt\b/, 'input'), 'input');
  }
  return error;
}

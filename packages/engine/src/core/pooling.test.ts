import { checkpointNames, decodeFloat32Base64, fixturePath, readReference } from '@pagoda/fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelConfig } from '../model/model-config';
import { loadModelWeights } from '../model/model-loader';
import { readFloat } from '../model/weight-tensor';
import { cosineDistance } from '../test';
import { AsyncLLM, type EmbeddingOutput } from './async-llm';
import { LLM } from './llm';

const small = { kvCacheMemory: '16MiB', maxModelLen: 1024, intraOpNumThreads: 1 } as const;

/** `hidden · headᵀ`: the logits the model's vocabulary projection makes of one final-norm hidden state. */
function project(hidden: readonly number[], head: Float32Array, vocabSize: number): Float32Array {
  const width = hidden.length;
  const logits = new Float32Array(vocabSize);
  for (let row = 0; row < vocabSize; row += 1) {
    let sum = 0;
    for (let column = 0; column < width; column += 1) sum += hidden[column]! * head[row * width + column]!;
    logits[row] = sum;
  }
  return logits;
}

function norm(vector: readonly number[]): number {
  return Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0));
}

describe.each(checkpointNames)('the pooling runner on %s', (checkpoint) => {
  const reference = readReference(checkpoint);
  let llm: LLM;
  let head: Float32Array;
  let vocabSize: number;
  beforeAll(async () => {
    const dir = fixturePath(checkpoint);
    const config = await loadModelConfig(dir);
    vocabSize = config.vocabSize;
    const weights = await loadModelWeights(dir, config, { onProgress: () => undefined });
    const name = config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    head = await readFloat(weights.get(name)!, name);
    llm = await LLM.create(dir, { ...small, runner: 'pooling', poolerConfig: { normalize: false } });
  });
  afterAll(() => llm.close());

  it("gives the last token's final-norm hidden state: times lm_head, it is transformers' last-position logits", async () => {
    // The reference keeps the whole last-position logits for some prompts.
    const kept = reference.prompts.filter((prompt) => prompt.last_logits_f32_b64 !== undefined);
    expect(kept.length).toBeGreaterThan(0);
    const embeddings = await llm.embed(kept.map((prompt) => prompt.ids));
    embeddings.forEach((embedding, index) => {
      const prompt = kept[index]!;
      const expected = decodeFloat32Base64(prompt.last_logits_f32_b64!);
      const logits = project(embedding, head, vocabSize);
      let worst = 0;
      for (let token = 0; token < vocabSize; token += 1) worst = Math.max(worst, Math.abs(logits[token]! - expected[token]!));
      expect(worst, `prompt ${index}`).toBeLessThan(1e-3);
    });
  });

  it('gives the same vector for a prompt alone, in a batch, and with its prefix cached', async () => {
    const prompts = reference.prompts.map((prompt) => prompt.ids);
    const batched = await llm.embed(prompts);
    for (const [index, prompt] of prompts.entries()) {
      const [alone] = await llm.embed([prompt]);
      expect(cosineDistance(alone!, batched[index]!), `prompt ${index}`).toBeLessThan(1e-5);
    }
  });
});

describe('pooler configs', () => {
  const reference = readReference('tiny-qwen3');
  const prompts = reference.prompts.map((prompt) => prompt.ids);

  it('normalizes by default, and mean pooling averages every position (none from the prefix cache)', async () => {
    const raw = await LLM.create(fixturePath('tiny-qwen3'), { ...small, runner: 'pooling', poolerConfig: { normalize: false } });
    const normalized = await LLM.create(fixturePath('tiny-qwen3'), { ...small, runner: 'pooling' });
    const mean = await LLM.create(fixturePath('tiny-qwen3'), { ...small, runner: 'pooling', poolerConfig: { pooling_type: 'mean', normalize: false } });
    try {
      const last = await raw.embed(prompts);
      const unit = await normalized.embed(prompts);
      unit.forEach((vector, index) => {
        expect(Math.abs(norm(vector) - 1)).toBeLessThan(1e-6);
        const scale = norm(last[index]!);
        vector.forEach((value, column) => expect(Math.abs(value - last[index]![column]! / scale)).toBeLessThan(1e-6));
      });

      // The mean over a prompt's positions is the mean of the last-token vectors of its prefixes.
      const prompt = prompts[1]!.slice(0, 12);
      const prefixes = await raw.embed(prompt.map((_, length) => prompt.slice(0, length + 1)));
      const expected = prefixes[0]!.map((_, column) => prefixes.reduce((sum, vector) => sum + vector[column]!, 0) / prefixes.length);
      await mean.embed([prompt]); // its blocks are now cached; mean pooling must not use them
      const [pooled] = await mean.embed([prompt]);
      pooled!.forEach((value, column) => expect(Math.abs(value - expected[column]!)).toBeLessThan(1e-4));
    } finally {
      await Promise.all([raw.close(), normalized.close(), mean.close()]);
    }
  });

  it('refuses generation on a pooling model and embeddings on a generating one, naming the runner', async () => {
    const pooling = await LLM.create(fixturePath('tiny-qwen3'), { ...small, runner: 'pooling' });
    await expect(pooling.generate([prompts[0]!], { maxTokens: 2 })).rejects.toThrow(/runner pooling/);
    await pooling.close();
    const generating = await LLM.create(fixturePath('tiny-qwen3'), small);
    await expect(generating.embed([prompts[0]!])).rejects.toThrow(/runner pooling/);
    await generating.close();
    await expect(LLM.create(fixturePath('tiny-qwen3'), { ...small, runner: 'generate', poolerConfig: { normalize: false } })).rejects.toThrow(/pooler_config/);
    await expect(LLM.create(fixturePath('tiny-qwen3'), { ...small, runner: 'pooling', poolerConfig: { pooling_type: 'CLS' } })).rejects.toThrow(
      /pooling_type must be one of LAST, MEAN, got "CLS"/,
    );
  });
});

describe('AsyncLLM.embed across ranks', () => {
  const reference = readReference('tiny-llama');
  const prompts = reference.prompts.map((prompt) => prompt.ids);
  let single: AsyncLLM;
  let parallel: AsyncLLM;
  beforeAll(async () => {
    const options = { ...small, runner: 'pooling', tokenizerPoolSize: 1 } as const;
    [single, parallel] = await Promise.all([
      AsyncLLM.create(fixturePath('tiny-llama'), options),
      AsyncLLM.create(fixturePath('tiny-llama'), { ...options, tensorParallelSize: 2, pipelineParallelSize: 2 }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([single?.close(), parallel?.close()]);
  });

  it('gives one rank’s vectors at tensor_parallel_size 2, pipeline_parallel_size 2, concurrently and alone', async () => {
    const alone: EmbeddingOutput[] = [];
    for (const prompt of prompts) alone.push(await single.embed({ prompt }));
    const together = await Promise.all(prompts.map((prompt) => parallel.embed({ prompt })));
    together.forEach((output, index) => {
      expect(output.promptTokenIds).toEqual(prompts[index]);
      expect(cosineDistance(output.embedding, alone[index]!.embedding), `prompt ${index}`).toBeLessThan(1e-5);
    });
  });

  it('tokenizes a text prompt off the event loop, and an abort ends the request', async () => {
    const text = 'The capital of France is';
    const [output, ids] = await Promise.all([single.embed({ prompt: text }), single.encode(text)]);
    expect(output.promptTokenIds).toEqual(ids);
    const controller = new AbortController();
    controller.abort();
    await expect(single.embed({ prompt: prompts[2]!, signal: controller.signal })).rejects.toThrow(/ended before its prompt was computed/);
    expect(() => single.generate({ prompt: 'hi' })).toThrow(/runner pooling/);
  });
});

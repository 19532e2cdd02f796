// llama.cpp through node-llama-cpp, on the CPU with its prebuilt binaries (never a source build), driven by token ids
// so both engines see exactly the same prompts.
import type { Llama, LlamaModel } from 'node-llama-cpp';

/** node-llama-cpp with its CPU prebuilt binary, or the reason it cannot load here. */
export async function loadLlamaCpp(): Promise<{ llama: Llama } | { error: string }> {
  try {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    return { llama: await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error }) };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

export interface StreamTimings {
  /** The generated token ids of each stream. */
  readonly tokens: number[][];
  /** Per stream, the time (seconds from the start) each token was produced. */
  readonly tokenTimes: number[][];
  readonly elapsedSeconds: number;
}

/**
 * Greedy decoding of `prompts` as concurrent sequences of one context, which node-llama-cpp batches into one decode
 * per step. Each stream produces exactly `steps` tokens: an end-of-sequence token is yielded and decoding goes on,
 * as with `ignore_eos`.
 */
export async function generateGreedy(
  model: LlamaModel,
  prompts: readonly (readonly number[])[],
  steps: number,
  options: { threads?: number } = {},
): Promise<StreamTimings> {
  const longest = Math.max(...prompts.map((prompt) => prompt.length));
  const context = await model.createContext({
    sequences: prompts.length,
    contextSize: longest + steps + 16,
    // The whole prefill in one batch, as Pagoda's 2048-token step budget takes it.
    batchSize: Math.min(4096, Math.max(512, prompts.length * longest)),
    ...(options.threads === undefined ? {} : { threads: options.threads }),
  });
  try {
    const start = performance.now();
    const run = async (prompt: readonly number[]) => {
      const sequence = context.getSequence();
      const tokens: number[] = [];
      const times: number[] = [];
      for await (const token of sequence.evaluate([...prompt] as never[], { temperature: 0, yieldEogToken: true })) {
        tokens.push(token as number);
        times.push((performance.now() - start) / 1000);
        if (tokens.length >= steps) break;
      }
      return { tokens, times };
    };
    const results = await Promise.all(prompts.map(run));
    return { tokens: results.map((result) => result.tokens), tokenTimes: results.map((result) => result.times), elapsedSeconds: (performance.now() - start) / 1000 };
  } finally {
    await context.dispose();
  }
}

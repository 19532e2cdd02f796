// The fixtures exported as GGUF and run greedily by llama.cpp must follow transformers' reference, by the fixture
// README's rule for a looser oracle: tokens equal up to the first step whose reference margin is under 0.01, and at
// that step a token among the reference's top two. Pagoda is held to the same rule on the same prompts.
import { LLM } from '@pagoda/engine';
import { type CheckpointName, fixturePath, readFixtureJson } from '@pagoda/fixtures';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exportModelGguf } from '../gguf/export-llama';
import { generateGreedy, loadLlamaCpp } from './llama-cpp-runner';

interface Reference {
  prompts: Array<{ ids: number[]; greedy: { ids: number[]; steps: Array<{ top2: { ids: number[] }; margin: number }> } }>;
}

const reference = readFixtureJson('tiny-llama/reference.json') as Reference;
const steps = 24;
const references = Object.fromEntries(
  (['tiny-llama', 'tiny-qwen2', 'tiny-qwen3'] as const).map((name) => [name, readFixtureJson(`${name}/reference.json`) as Reference]),
) as Record<CheckpointName, Reference>;

/** Where the rule stops comparing: the first step with a margin under 0.01, or the end. */
function comparedSteps(prompt: Reference['prompts'][number]): number {
  const close = prompt.greedy.steps.findIndex((step) => step.margin < 0.01);
  return close === -1 ? steps : close;
}

function expectFollowsReference(tokens: readonly (readonly number[])[], expected: Reference = reference): void {
  expected.prompts.forEach((prompt, index) => {
    const until = comparedSteps(prompt);
    expect(tokens[index]!.slice(0, until), `prompt ${index}: steps before ${until}`).toEqual(prompt.greedy.ids.slice(0, until));
    if (until < steps) expect(prompt.greedy.steps[until]!.top2.ids, `prompt ${index}: step ${until}`).toContain(tokens[index]![until]);
  });
}

const loaded = await loadLlamaCpp();
if ('error' in loaded) console.warn(`skipping the llama.cpp cross-check: node-llama-cpp cannot load its prebuilt CPU binary here (${loaded.error})`);

describe('tiny-llama greedy decoding against the transformers reference', () => {
  let directory: string | undefined;
  afterAll(async () => {
    if (directory !== undefined) await rm(directory, { recursive: true, force: true });
  });

  it('has a step under the 0.01 margin to exercise the top-2 rule', () => {
    expect(reference.prompts.map(comparedSteps)).toContain(7);
  });

  // Llama's SentencePiece vocabulary and permuted q/k rows; Qwen's byte-level BPE one, biases (qwen2), q/k norms and
  // a tied head without output.weight (qwen3).
  it.skipIf('error' in loaded).each(['tiny-llama', 'tiny-qwen2', 'tiny-qwen3'] as const)('llama.cpp (node-llama-cpp) on %s exported as GGUF follows the reference', async (name) => {
    if ('error' in loaded) return;
    directory ??= await mkdtemp(join(tmpdir(), 'pagoda-bench-cross-check-'));
    const file = join(directory, `${name}.gguf`);
    await exportModelGguf(fixturePath(name), file, { weights: 'checkpoint', name });
    const model = await loaded.llama.loadModel({ modelPath: file, gpuLayers: 0 });
    try {
      const { tokens } = await generateGreedy(
        model,
        references[name].prompts.map((prompt) => prompt.ids),
        steps,
        // one thread: llama.cpp's spinning worker threads crawl on a shared, oversubscribed machine
        { threads: 1 },
      );
      expect(tokens.map((stream) => stream.length)).toEqual([steps, steps, steps]);
      expectFollowsReference(tokens, references[name]);
    } finally {
      await model.dispose();
    }
  });

  it('Pagoda (the LLM class) on the checkpoint follows the reference', async () => {
    const llm = await LLM.create(fixturePath('tiny-llama'), { kvCacheMemory: '64MiB', maxModelLen: 512, generationConfig: 'vllm' });
    try {
      const outputs = await llm.generate(
        reference.prompts.map((prompt) => prompt.ids),
        { temperature: 0, maxTokens: steps, ignoreEos: true },
      );
      expectFollowsReference(outputs.map((output) => output.outputs[0]!.tokenIds));
    } finally {
      await llm.close();
    }
  });
});

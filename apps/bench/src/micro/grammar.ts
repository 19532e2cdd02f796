// Structured outputs with XGrammar's WASM build, on Qwen's 151,936-token vocabulary (tiny-qwen2's tokenizer):
// building the tokenizer info, compiling each kind of constraint, the next-token bitmask per constrained request
// per step (on the calling thread, walking each grammar with seeded random allowed tokens), and, through LLM on
// the tiny-qwen2 fixture, the step loop's stall: how long completing a step waits for the grammar worker's masks.
//   micro grammar [steps=40] [requests=8]
import { LLM, XGrammarBackend, structuredOutputsKey, structuredOutputsSpec, xgrammarVocabulary } from '@pagoda/engine';
import type { StructuredOutputsParams } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import { readFileSync } from 'node:fs';

const schemas: Record<string, StructuredOutputsParams> = {
  'json: enum, boolean, bounded integer': {
    json: { type: 'object', properties: { color: { enum: ['red', 'green', 'blue'] }, ok: { type: 'boolean' }, count: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['color', 'ok', 'count'], additionalProperties: false },
  },
  'json: string with maxLength 8': { json: { type: 'object', properties: { name: { type: 'string', maxLength: 8 } }, required: ['name'] } },
  'json: free string': { json: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } },
  json_object: { jsonObject: true },
  regex: { regex: '[a-z]{2,5}-[0-9]{3}' },
  choice: { choice: ['positive', 'negative', 'neutral'] },
  'grammar (EBNF)': { grammar: 'root ::= "(" expr ")"\nexpr ::= [0-9]+ ("+" [0-9]+)*' },
};

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? Number.NaN;
}

const summary = (values: number[]) => ({ mean: values.reduce((sum, value) => sum + value, 0) / values.length, p50: percentile(values, 0.5), p99: percentile(values, 0.99), max: Math.max(...values) });

export default async function grammarBenchmark(args: string[]): Promise<object> {
  const steps = Number(args[0] ?? 40);
  const requests = Number(args[1] ?? 8);
  const vocabSize = 151_936;
  const readStarted = performance.now();
  const vocabulary = xgrammarVocabulary(JSON.parse(readFileSync(fixturePath('tiny-qwen2', 'tokenizer.json'), 'utf8')), vocabSize);
  const readMs = performance.now() - readStarted;
  const infoStarted = performance.now();
  const backend = await XGrammarBackend.create({ vocabulary, stopTokenIds: [151_643, 151_645], disableAnyWhitespace: true });
  const tokenizerInfoMs = performance.now() - infoStarted;

  const perSpec = [];
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (const [name, params] of Object.entries(schemas)) {
    const spec = structuredOutputsSpec(params);
    const key = structuredOutputsKey(spec);
    const compileStarted = performance.now();
    const first = await backend.compile(key, spec);
    const compileMs = performance.now() - compileStarted;
    first.dispose();
    const maskMs: number[] = [];
    const bitmask = new Int32Array(Math.ceil(vocabSize / 32));
    for (let walk = 0; walk < 3; walk += 1) {
      const grammar = await backend.compile(key, spec);
      for (let step = 0; step < steps && !grammar.isTerminated(); step += 1) {
        const started = performance.now();
        await grammar.fillBitmask(bitmask, 0);
        maskMs.push(performance.now() - started);
        const allowed: number[] = [];
        for (let word = 0; word < bitmask.length; word += 1) {
          if (bitmask[word] === 0) continue;
          for (let bit = 0; bit < 32; bit += 1) if ((bitmask[word]! >>> bit) & 1) allowed.push(word * 32 + bit);
        }
        if (allowed.length === 0 || !grammar.acceptTokens([allowed[Math.floor(random() * allowed.length)]!])) break;
      }
      grammar.dispose();
    }
    perSpec.push({ name, compileMs, maskMsPerStep: summary(maskMs), steps: maskMs.length });
  }
  backend.dispose();

  // The step loop: constrained and unconstrained requests in one batch on the fixture, the masks from the worker.
  const llm = await LLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '64MiB', maxModelLen: 512, structuredOutputsConfig: { disableAnyWhitespace: true } });
  const prompts = Array.from({ length: requests * 2 }, (_, index) => `prompt ${index}`);
  const params = prompts.map((_, index) =>
    index % 2 === 0
      ? { temperature: 1, seed: index, maxTokens: steps, structuredOutputs: schemas['json: enum, boolean, bounded integer']! }
      : { temperature: 1, seed: index, maxTokens: steps, ignoreEos: true },
  );
  await llm.generate(prompts.slice(0, 2), params.slice(0, 2)); // the worker's start-up and the compilation
  llm.core.bitmaskWaitMs.length = 0;
  llm.core.structuredOutput!.stats.fills.length = 0;
  const started = performance.now();
  await llm.generate(prompts, params);
  const wallMs = performance.now() - started;
  const stats = llm.core.structuredOutput!.stats;
  const fillMsPerRow = stats.fills.map((fill) => fill.ms / fill.rows);
  const loop = {
    constrainedRequests: requests,
    unconstrainedRequests: requests,
    wallMs,
    grammarWorkerSetupMs: stats.setupMs,
    grammarWorkerTokenizerInfoMs: stats.tokenizerInfoMs,
    workerFillMsPerConstrainedRow: summary(fillMsPerRow),
    stepLoopStallMs: summary(llm.core.bitmaskWaitMs),
    stepLoopStallTotalMs: llm.core.bitmaskWaitMs.reduce((sum, value) => sum + value, 0),
  };
  await llm.close();
  return { vocabSize, readTokenizerJsonMs: readMs, tokenizerInfoAndCompilerMs: tokenizerInfoMs, perSpec, loop };
}

import { rm } from 'node:fs/promises';
import { integerOption, parseOptions, UsageError } from '../cli-args';
import { writeDummyModelDir } from '../dummy-model';
import { exportModelGguf } from './export-llama';

export const exportGgufUsage = `Usage: pagoda-bench export-gguf --output FILE [--model DIR] [--load-format safetensors|dummy] [--seed N]

Writes a Llama checkpoint folder as an F32 GGUF (v3) that llama.cpp loads: q/k rows permuted to llama.cpp's RoPE
layout, output.weight written even when tied, the tokenizer as a SentencePiece vocabulary padded to the model's size.

  --output FILE          the .gguf to write
  --model DIR            a checkpoint folder (default: the dummy SmolLM2-135M-shaped model)
  --load-format FORMAT   safetensors (the folder's weights) or dummy (the engine's seeded dummy weights; the default
                         without --model)
  --seed N               the dummy weights' seed, as the engine's --seed (default 0)`;

export async function exportGgufMain(argv: readonly string[]): Promise<void> {
  const values = parseOptions(argv, {
    output: { type: 'string' },
    model: { type: 'string' },
    'load-format': { type: 'string' },
    seed: { type: 'string', default: '0' },
  });
  if (values.output === undefined) throw new UsageError(`--output FILE is required\n\n${exportGgufUsage}`);
  const loadFormat = values['load-format'] ?? (values.model === undefined ? 'dummy' : 'safetensors');
  if (loadFormat !== 'dummy' && loadFormat !== 'safetensors') throw new UsageError(`--load-format must be dummy or safetensors, got ${JSON.stringify(loadFormat)}`);
  if (values.model === undefined && loadFormat !== 'dummy') throw new UsageError('the default dummy model has no weights: pass --model DIR or --load-format dummy');
  const directory = values.model ?? (await writeDummyModelDir());
  try {
    const { config, tensorCount } = await exportModelGguf(directory, values.output, {
      weights: loadFormat === 'dummy' ? 'dummy' : 'checkpoint',
      seed: integerOption('seed', values.seed, 0)!,
    });
    console.log(`wrote ${values.output}: ${tensorCount} F32 tensors, ${config.numLayers} layers, hidden ${config.hiddenSize}, vocabulary ${config.vocabSize}`);
  } finally {
    if (values.model === undefined) await rm(directory, { recursive: true, force: true });
  }
}

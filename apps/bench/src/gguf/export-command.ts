import { rm } from 'node:fs/promises';
import { integerOption, parseOptions, UsageError } from '../cli-args';
import { writeDummyModelDir } from '../dummy-model';
import { exportModelGguf } from './export-llama';

export const exportGgufUsage = `Usage: pagoda-bench export-gguf --output FILE [--model DIR] [--load-format safetensors|dummy] [--seed N] [--type T]

Writes a Llama, Qwen2 or Qwen3 checkpoint folder as a GGUF (v3) that llama.cpp and Pagoda load (@pagoda/engine/test's
exporter): llama's q/k rows permuted to llama.cpp's RoPE layout and output.weight written even when tied, the
tokenizer as llama.cpp's vocabulary (SentencePiece for Llama, byte-level BPE for Qwen) padded to the model's size.

  --output FILE          the .gguf to write
  --type T               the projections' type: F32 (default), F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K; the
                         embedding and head take Q8_0 for Q4_0 (Pagoda's int4), else the same; norms stay F32
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
    type: { type: 'string', default: 'F32' },
  });
  const types = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
  const type = types.find((candidate) => candidate === values.type);
  if (type === undefined) throw new UsageError(`--type must be one of ${types.join(', ')}, got ${JSON.stringify(values.type)}`);
  if (values.output === undefined) throw new UsageError(`--output FILE is required\n\n${exportGgufUsage}`);
  const loadFormat = values['load-format'] ?? (values.model === undefined ? 'dummy' : 'safetensors');
  if (loadFormat !== 'dummy' && loadFormat !== 'safetensors') throw new UsageError(`--load-format must be dummy or safetensors, got ${JSON.stringify(loadFormat)}`);
  if (values.model === undefined && loadFormat !== 'dummy') throw new UsageError('the default dummy model has no weights: pass --model DIR or --load-format dummy');
  const directory = values.model ?? (await writeDummyModelDir());
  try {
    const { config, types: written } = await exportModelGguf(directory, values.output, {
      weights: loadFormat === 'dummy' ? 'dummy' : 'checkpoint',
      seed: integerOption('seed', values.seed, 0)!,
      type,
    });
    const counts = new Map<string, number>();
    for (const stored of written.values()) counts.set(stored, (counts.get(stored) ?? 0) + 1);
    const summary = [...counts].map(([stored, count]) => `${count} ${stored}`).join(', ');
    console.log(`wrote ${values.output}: ${written.size} tensors (${summary}), ${config.architecture}, ${config.numLayers} layers, hidden ${config.hiddenSize}, vocabulary ${config.vocabSize}`);
  } finally {
    if (values.model === undefined) await rm(directory, { recursive: true, force: true });
  }
}

import { dummyWeights, type GgmlTypeName, loadCheckpointWeights, loadModelConfig, type ModelConfig } from '@pagoda/engine';
import { exportGguf } from '@pagoda/engine/test';

export interface ExportOptions {
  /** `checkpoint` reads the folder's safetensors; `dummy` makes the engine's seeded dummy weights. */
  readonly weights: 'checkpoint' | 'dummy';
  /** The dummy weights' seed (the engine's `seed` option; default 0). */
  readonly seed?: number;
  readonly name?: string;
  /** The type of the projections (default F32); see @pagoda/engine/test's exportGguf for the other tensors. */
  readonly type?: GgmlTypeName;
}

/**
 * Writes a checkpoint folder (config.json, tokenizer.json, weights) as a GGUF for llama.cpp, through
 * `@pagoda/engine/test`'s exporter: its vocabulary from the folder's tokenizer, q/k rows permuted for `llama`.
 */
export async function exportModelGguf(modelDir: string, file: string, options: ExportOptions): Promise<{ config: ModelConfig; tensorCount: number; types: ReadonlyMap<string, GgmlTypeName> }> {
  const config = await loadModelConfig(modelDir);
  const weights = options.weights === 'dummy' ? dummyWeights(config, options.seed ?? 0) : await loadCheckpointWeights(modelDir, config);
  const { types } = await exportGguf(config, weights, file, {
    type: options.type ?? 'F32',
    tokenizer: modelDir,
    ...(options.name === undefined ? {} : { name: options.name }),
  });
  return { config, tensorCount: types.size, types };
}

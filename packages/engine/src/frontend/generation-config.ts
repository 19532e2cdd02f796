import { join } from 'node:path';
import { ModelConfigError } from '../errors';
import { readJsonFile } from '../json-file';

/**
 * The sampling defaults a checkpoint's generation_config.json recommends. As with vLLM's default
 * `--generation-config auto`, they apply to every request that does not set the parameter itself.
 */
export interface GenerationDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** From `max_new_tokens`. */
  maxTokens?: number;
}

export interface GenerationConfig {
  defaults: GenerationDefaults;
  /** `eos_token_id` here may list more end tokens than config.json does (e.g. an end-of-turn token). */
  eosTokenIds: number[];
}

const fields: Array<[keyof GenerationDefaults, string]> = [
  ['temperature', 'temperature'],
  ['topP', 'top_p'],
  ['topK', 'top_k'],
  ['minP', 'min_p'],
  ['repetitionPenalty', 'repetition_penalty'],
  ['maxTokens', 'max_new_tokens'],
];

/** Reads generation_config.json; a checkpoint without one has no defaults. */
export async function loadGenerationConfig(modelDir: string): Promise<GenerationConfig> {
  const file = join(modelDir, 'generation_config.json');
  const raw = await readJsonFile(file, {
    optional: true,
    error: (problem, cause) =>
      new ModelConfigError(file, problem === 'unreadable' ? 'cannot read the generation config' : `is not valid JSON (${(cause as Error).message})`, {
        cause,
      }),
  });
  if (raw === undefined) return { defaults: {}, eosTokenIds: [] };
  return parseGenerationConfig(raw as Record<string, unknown>);
}

export function parseGenerationConfig(raw: Record<string, unknown>): GenerationConfig {
  const defaults: GenerationDefaults = {};
  // A checkpoint that says do_sample: false means greedy; its temperature etc. are not meant to apply.
  if (raw.do_sample === false) defaults.temperature = 0;
  for (const [name, key] of fields) {
    const value = raw[key];
    if (typeof value === 'number' && Number.isFinite(value) && !(name === 'temperature' && raw.do_sample === false)) {
      defaults[name] = value;
    }
  }
  const eos = raw.eos_token_id;
  const eosTokenIds = typeof eos === 'number' ? [eos] : Array.isArray(eos) ? eos.filter((id): id is number => Number.isInteger(id)) : [];
  return { defaults, eosTokenIds };
}

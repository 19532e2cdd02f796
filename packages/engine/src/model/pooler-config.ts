import { join } from 'node:path';
import { ModelConfigError } from '../errors';
import { readJsonFile } from '../json-file';

/** How a pooling model turns a prompt's hidden states into one vector (vLLM's `--pooler-config`). */
export interface PoolerConfig {
  /** `LAST`: the last token's state (decoder embedding models: Qwen3-Embedding); `MEAN`: the mean over the tokens. */
  readonly poolingType: 'LAST' | 'MEAN';
  /** Scale the vector to unit length (cosine similarity becomes a dot product). */
  readonly normalize: boolean;
}

/** vLLM's JSON spelling of a pooler config, as `--pooler-config` takes it. */
export interface PoolerConfigInput {
  readonly pooling_type?: string;
  readonly normalize?: boolean;
}

const poolingTypes = ['LAST', 'MEAN'] as const;

/**
 * The pooler of a checkpoint: `override` (vLLM's `--pooler-config`) field by field over what the checkpoint's
 * sentence-transformers files say (`modules.json` naming a `Pooling` module whose `config.json` sets its mode, and
 * a `Normalize` module), over vLLM's default for decoder models: last token, normalized.
 */
export async function loadPoolerConfig(modelDir: string, override: PoolerConfigInput = {}): Promise<PoolerConfig> {
  const fromCheckpoint = await readSentenceTransformersPooler(modelDir);
  const poolingType = (override.pooling_type?.toUpperCase() ?? fromCheckpoint.poolingType ?? 'LAST') as PoolerConfig['poolingType'];
  if (!poolingTypes.includes(poolingType)) {
    throw new ModelConfigError('pooler_config', `pooling_type must be one of ${poolingTypes.join(', ')}, got ${JSON.stringify(override.pooling_type ?? poolingType)}`, {
      field: 'pooling_type',
    });
  }
  const normalize = override.normalize ?? fromCheckpoint.normalize ?? true;
  if (typeof normalize !== 'boolean') {
    throw new ModelConfigError('pooler_config', `normalize must be a boolean, got ${JSON.stringify(normalize)}`, { field: 'normalize' });
  }
  return { poolingType, normalize };
}

interface SentenceTransformersModule {
  readonly path?: unknown;
  readonly type?: unknown;
}

async function readSentenceTransformersPooler(modelDir: string): Promise<{ poolingType?: string; normalize?: boolean }> {
  const file = join(modelDir, 'modules.json');
  const modules = (await readJsonFile(file, {
    optional: true,
    error: (problem, cause) => new ModelConfigError(file, problem === 'unreadable' ? 'cannot be read' : 'is not valid JSON', { cause }),
  })) as SentenceTransformersModule[] | undefined;
  if (!Array.isArray(modules)) return {};
  const typeOf = (module: SentenceTransformersModule) => (typeof module.type === 'string' ? module.type : '');
  const pooling = modules.find((module) => typeOf(module).endsWith('.Pooling'));
  const normalize = modules.some((module) => typeOf(module).endsWith('.Normalize'));
  if (pooling === undefined || typeof pooling.path !== 'string') return { normalize };
  const configFile = join(modelDir, pooling.path, 'config.json');
  const config = (await readJsonFile(configFile, {
    optional: true,
    error: (problem, cause) => new ModelConfigError(configFile, problem === 'unreadable' ? 'cannot be read' : 'is not valid JSON', { cause }),
  })) as Record<string, unknown> | undefined;
  if (config === undefined) return { normalize };
  if (config.pooling_mode_lasttoken === true) return { poolingType: 'LAST', normalize };
  if (config.pooling_mode_mean_tokens === true) return { poolingType: 'MEAN', normalize };
  const mode = Object.keys(config).find((key) => key.startsWith('pooling_mode_') && config[key] === true);
  throw new ModelConfigError(configFile, `${mode ?? 'its pooling mode'} is not supported (lasttoken and mean_tokens are)`, { field: mode });
}

import { ModelConfigError } from '../errors';
import type { ModelConfig } from './model-config';

/** The rotary embedding of one forward pass: a frequency per pair of dimensions, and the factor on cos and sin. */
export interface RopeFrequencies {
  /** `headDim / 2` inverse frequencies, as float32 values like transformers computes them. */
  readonly inverseFrequencies: Float32Array;
  /** Multiplies cos and sin (YaRN's attention factor; 1 otherwise). */
  readonly attentionFactor: number;
}

/** The rope types the engine computes, named as in transformers' `ROPE_INIT_FUNCTIONS`. */
export const supportedRopeTypes = ['default', 'linear', 'dynamic', 'llama3', 'yarn'] as const;

type RopeConfig = Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling' | 'maxPositionEmbeddings'>;

/** The rope type a config asks for (`rope_type`, or the older `type`), checked against the supported ones. */
export function ropeType(config: RopeConfig, file = 'config.json'): (typeof supportedRopeTypes)[number] {
  const scaling = config.ropeScaling;
  const type = scaling?.rope_type ?? scaling?.type ?? 'default';
  if (typeof type !== 'string' || !(supportedRopeTypes as readonly string[]).includes(type)) {
    throw new ModelConfigError(
      file,
      `unsupported rope type ${JSON.stringify(type)}; supported: ${supportedRopeTypes.join(', ')}`,
      { field: 'rope_scaling' },
    );
  }
  return type as (typeof supportedRopeTypes)[number];
}

/**
 * The inverse frequencies and attention factor of transformers' `modeling_rope_utils` for the config's rope type.
 * `sequenceLength` (the longest position in the batch plus one) matters only to `dynamic`, which, like
 * transformers' `dynamic_rope_update`, raises the base once a sequence outgrows `max_position_embeddings`.
 * Arithmetic follows transformers' float32 where it rounds (the powers of the base, the quotients).
 */
export function ropeFrequencies(config: RopeConfig, sequenceLength = 0, file = 'config.json'): RopeFrequencies {
  const type = ropeType(config, file);
  const scaling = config.ropeScaling ?? {};
  const dim = config.headDim;
  const base = config.ropeTheta;
  const number = (key: string, fallback?: number): number => {
    const value = scaling[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new ModelConfigError(file, `rope ${type} needs a numeric ${key}, got ${JSON.stringify(value ?? null)}`, {
        field: 'rope_scaling',
      });
    }
    return value;
  };
  const defaultFrequencies = (ropeBase: number): Float32Array => {
    const out = new Float32Array(dim / 2);
    for (let pair = 0; pair < dim / 2; pair += 1) {
      out[pair] = 1 / Math.fround(ropeBase ** Math.fround((2 * pair) / dim));
    }
    return out;
  };

  switch (type) {
    case 'default':
      return { inverseFrequencies: defaultFrequencies(base), attentionFactor: 1 };
    case 'linear': {
      const factor = number('factor');
      return { inverseFrequencies: defaultFrequencies(base).map((value) => value / factor), attentionFactor: 1 };
    }
    case 'dynamic': {
      const factor = number('factor');
      const maxPositions = config.maxPositionEmbeddings;
      const length = Math.max(sequenceLength, maxPositions);
      const scaledBase = base * ((factor * length) / maxPositions - (factor - 1)) ** (dim / (dim - 2));
      return { inverseFrequencies: defaultFrequencies(scaledBase), attentionFactor: 1 };
    }
    case 'llama3': {
      const factor = number('factor');
      const lowFrequencyFactor = number('low_freq_factor', 1);
      const highFrequencyFactor = number('high_freq_factor', 4);
      const originalContext = number('original_max_position_embeddings', 8192);
      const lowFrequencyWavelength = originalContext / lowFrequencyFactor;
      const highFrequencyWavelength = originalContext / highFrequencyFactor;
      const inverseFrequencies = defaultFrequencies(base).map((frequency) => {
        const wavelength = (2 * Math.PI) / frequency;
        if (wavelength < highFrequencyWavelength) return frequency;
        if (wavelength > lowFrequencyWavelength) return frequency / factor;
        // Between the two wavelengths: blend the scaled and unscaled frequency.
        const smooth = (originalContext / wavelength - lowFrequencyFactor) / (highFrequencyFactor - lowFrequencyFactor);
        return (1 - smooth) * (frequency / factor) + smooth * frequency;
      });
      return { inverseFrequencies, attentionFactor: 1 };
    }
    case 'yarn': {
      const originalContext = number('original_max_position_embeddings', config.maxPositionEmbeddings);
      const factor = number('factor', config.maxPositionEmbeddings / originalContext);
      const mscale = scaling.mscale as number | undefined;
      const mscaleAllDim = scaling.mscale_all_dim as number | undefined;
      const getMscale = (scale: number, multiplier = 1): number =>
        scale <= 1 ? 1 : 0.1 * multiplier * Math.log(scale) + 1;
      const attentionFactor =
        typeof scaling.attention_factor === 'number'
          ? scaling.attention_factor
          : mscale && mscaleAllDim
            ? getMscale(factor, mscale) / getMscale(factor, mscaleAllDim)
            : getMscale(factor);
      const betaFast = (scaling.beta_fast as number | undefined) || 32;
      const betaSlow = (scaling.beta_slow as number | undefined) || 1;
      const truncate = scaling.truncate !== false;
      const correctionDim = (rotations: number): number =>
        (dim * Math.log(originalContext / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
      let low = correctionDim(betaFast);
      let high = correctionDim(betaSlow);
      if (truncate) {
        low = Math.floor(low);
        high = Math.ceil(high);
      }
      low = Math.max(low, 0);
      high = Math.min(high, dim - 1);
      if (low === high) high += 0.001;
      const inverseFrequencies = new Float32Array(dim / 2);
      for (let pair = 0; pair < dim / 2; pair += 1) {
        const positionFrequency = Math.fround(base ** Math.fround((2 * pair) / dim));
        const extrapolation = 1 / positionFrequency;
        const interpolation = 1 / (factor * positionFrequency);
        const ramp = Math.min(Math.max((pair - low) / (high - low), 0), 1);
        const extrapolationFactor = 1 - ramp;
        inverseFrequencies[pair] = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
      }
      return { inverseFrequencies, attentionFactor };
    }
  }
}

/**
 * Writes cos and sin for each position in the layout the graph's rotary step (ONNX `RotaryEmbedding` with
 * per-token caches) expects: `[tokens, headDim / 2]`, one value per frequency pair (transformers' `cat(freqs,
 * freqs)` repeats them over the two halves; the operator applies each to both), scaled by the attention factor.
 */
export function writeRopeCosSin(
  frequencies: RopeFrequencies,
  positions: ArrayLike<number>,
  cos: Float32Array,
  sin: Float32Array,
): void {
  const half = frequencies.inverseFrequencies.length;
  const factor = frequencies.attentionFactor;
  for (let token = 0; token < positions.length; token += 1) {
    const position = positions[token]!;
    const row = token * half;
    for (let pair = 0; pair < half; pair += 1) {
      // transformers multiplies positions by frequencies in float32 before taking cos and sin.
      const angle = Math.fround(frequencies.inverseFrequencies[pair]! * position);
      cos[row + pair] = Math.cos(angle) * factor;
      sin[row + pair] = Math.sin(angle) * factor;
    }
  }
}

import { describe, expect, it } from 'vitest';
import { ModelConfigError, parseModelConfig, ropeFrequencies, writeRopeCosSin } from '../index';

/** A Llama config with head_dim 8 (four rotary pairs), so every frequency can be checked by hand. */
function config(rope: Record<string, unknown>, maxPositionEmbeddings = 2048) {
  return parseModelConfig({
    architectures: ['LlamaForCausalLM'],
    vocab_size: 100,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    max_position_embeddings: maxPositionEmbeddings,
    ...rope,
  });
}

/** The classic keys and the newer rope_parameters form of the same scaling. */
function bothForms(theta: number, scaling: Record<string, unknown> | undefined) {
  const classic = { rope_theta: theta, rope_scaling: scaling ?? null };
  const parameters = { rope_parameters: { rope_type: 'default', ...scaling, rope_theta: theta } };
  return [classic, parameters];
}

function expectFrequencies(actual: Float32Array, expected: number[]): void {
  expect(actual.length).toBe(expected.length);
  expected.forEach((value, index) => expect(Math.abs(actual[index]! - value) / value, `pair ${index}`).toBeLessThan(1e-6));
}

describe('ropeFrequencies', () => {
  it.each(bothForms(10000, undefined))('default: theta^(-2i/d), attention factor 1 (%j)', (rope) => {
    const { inverseFrequencies, attentionFactor } = ropeFrequencies(config(rope));
    expectFrequencies(inverseFrequencies, [1, 0.1, 0.01, 0.001]);
    expect(attentionFactor).toBe(1);
  });

  it.each(bothForms(10000, { rope_type: 'linear', factor: 4 }))('linear: default frequencies over the factor (%j)', (rope) => {
    expectFrequencies(ropeFrequencies(config(rope)).inverseFrequencies, [0.25, 0.025, 0.0025, 0.00025]);
  });

  it("reads the older classic key `type` as the rope type", () => {
    const rope = { rope_theta: 10000, rope_scaling: { type: 'linear', factor: 2 } };
    expectFrequencies(ropeFrequencies(config(rope)).inverseFrequencies, [0.5, 0.05, 0.005, 0.0005]);
  });

  it.each(bothForms(10000, { rope_type: 'dynamic', factor: 2 }))(
    'dynamic: unchanged up to max_position_embeddings, then a larger base (%j)',
    (rope) => {
      const dynamic = config(rope, 16);
      expectFrequencies(ropeFrequencies(dynamic, 16).inverseFrequencies, [1, 0.1, 0.01, 0.001]);
      // At 32 tokens: base = 10000 · (2·32/16 − 1)^(8/6) = 10000 · 3^(4/3) = 43267.487...
      const base = 10000 * 3 ** (4 / 3);
      expectFrequencies(ropeFrequencies(dynamic, 32).inverseFrequencies, [1, base ** -0.25, base ** -0.5, base ** -0.75]);
    },
  );

  it.each(
    bothForms(500000, {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    }),
  )('llama3: high frequencies kept, low ones divided by the factor, the middle blended (%j)', (rope) => {
    // Wavelengths 2π/f: 6.3 and 167 (under 8192/4: kept), 4443 (between: blended), 118148 (over 8192: divided).
    const f2 = 500000 ** -0.5;
    const smooth = (8192 / ((2 * Math.PI) / f2) - 1) / (4 - 1);
    expectFrequencies(ropeFrequencies(config(rope)).inverseFrequencies, [
      1,
      500000 ** -0.25,
      (1 - smooth) * (f2 / 8) + smooth * f2,
      500000 ** -0.75 / 8,
    ]);
  });

  it.each(
    bothForms(10000, { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 2048, beta_fast: 32, beta_slow: 1 }),
  )('yarn: extrapolated, ramped and interpolated pairs, and attention factor 0.1·ln(factor) + 1 (%j)', (rope) => {
    // Correction range: floor(8·ln(2048/(32·2π)) / (2·ln 10000)) = 1, ceil(8·ln(2048/(2π)) / (2·ln 10000)) = 3,
    // so the ramp over pairs 0..3 is [0, 0, 0.5, 1]: pairs 0-1 keep 1/θ^(2i/d), pair 2 is half of each, pair 3 ÷ 4.
    const { inverseFrequencies, attentionFactor } = ropeFrequencies(config(rope));
    expectFrequencies(inverseFrequencies, [1, 0.1, 0.5 * 0.01 + 0.5 * (0.01 / 4), 0.001 / 4]);
    expect(attentionFactor).toBeCloseTo(0.1 * Math.log(4) + 1, 12);
  });

  it('refuses a rope type it does not compute, naming it', () => {
    expect(() => ropeFrequencies(config({ rope_scaling: { rope_type: 'longrope', factor: 2 } }))).toThrow(ModelConfigError);
    expect(() => ropeFrequencies(config({ rope_scaling: { rope_type: 'longrope', factor: 2 } }))).toThrow(/"longrope"/);
  });
});

describe('writeRopeCosSin', () => {
  it('writes one cos and one sin per frequency pair and token, scaled by the attention factor', () => {
    const frequencies = { inverseFrequencies: Float32Array.of(1, 0.5), attentionFactor: 2 };
    const cos = new Float32Array(4);
    const sin = new Float32Array(4);
    writeRopeCosSin(frequencies, [0, 3], cos, sin);
    expect(Array.from(cos.subarray(0, 2))).toEqual([2, 2]);
    expect(Array.from(sin.subarray(0, 2))).toEqual([0, 0]);
    [2 * Math.cos(3), 2 * Math.cos(1.5)].forEach((value, index) => expect(cos[2 + index]).toBeCloseTo(value, 6));
    [2 * Math.sin(3), 2 * Math.sin(1.5)].forEach((value, index) => expect(sin[2 + index]).toBeCloseTo(value, 6));
  });
});

/**
 * Float32 to the 16-bit float formats the GPU graph stores weights in, rounding to nearest even as PyTorch's
 * `.half()` and `.bfloat16()` do.
 */

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** One float32 value to IEEE half precision bits: overflow becomes infinity, tiny values become subnormals or 0. */
export function float32ToFloat16Bits(value: number): number {
  scratch[0] = value;
  const bits = scratchBits[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    // Subnormal: shift the mantissa (with its implicit 1) right, rounding to nearest even.
    const full = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    const halfMantissa = full >>> shift;
    const remainder = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const round = remainder > halfway || (remainder === halfway && (halfMantissa & 1) === 1) ? 1 : 0;
    return sign | (halfMantissa + round);
  }
  const halfMantissa = mantissa >>> 13;
  const remainder = mantissa & 0x1fff;
  const round = remainder > 0x1000 || (remainder === 0x1000 && (halfMantissa & 1) === 1) ? 1 : 0;
  // A carry out of the mantissa correctly bumps the exponent (and may reach infinity).
  return sign | ((halfExponent << 10) + halfMantissa + round);
}

/** One float32 value to bfloat16 bits (the upper half of the float32, rounded to nearest even). */
export function float32ToBfloat16Bits(value: number): number {
  scratch[0] = value;
  const bits = scratchBits[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return ((bits >>> 16) | 0x40) & 0xffff;
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** Converts a whole array to 16-bit floats of the given format. */
export function toHalfPrecision(values: Float32Array, format: 'float16' | 'bfloat16'): Uint16Array {
  const out = new Uint16Array(values.length);
  const convert = format === 'float16' ? float32ToFloat16Bits : float32ToBfloat16Bits;
  for (let index = 0; index < values.length; index += 1) out[index] = convert(values[index]!);
  return out;
}

/** Bfloat16 bits back to a number. */
export function bfloat16BitsToFloat32(bits: number): number {
  scratchBits[0] = bits << 16;
  return scratch[0]!;
}

/** IEEE half precision to single precision, subnormals included. */
export function float16ToFloat32(half: number): number {
  const sign = half & 0x8000 ? -1 : 1;
  const exponent = (half >> 10) & 0x1f;
  const fraction = half & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : Number.NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

import type { GgmlTypeName } from '../model/ggml-blocks';
import { float16ToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits } from '../model/half';
import { quantizeRows, type QuantizedBlocks } from '../model/quantization';

/**
 * Float rows as the blocks of a ggml type, for writing test and benchmark GGUF files. F32/F16/BF16 store the values;
 * Q8_0 and Q4_0 use the engine's own quantizer (ggml's reference arithmetic, so the blocks equal llama.cpp's);
 * Q4_K, Q5_K and Q6_K use the simple encoders below, which write valid blocks of those layouts (the decoder is what
 * the tests hold against ggml) but do not search scales as llama.cpp's `make_qkx2_quants` does.
 */
export function encodeGgmlRows(type: GgmlTypeName, values: Float32Array, rows: number, columns: number): Uint8Array {
  switch (type) {
    case 'F32':
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case 'F16':
    case 'BF16': {
      const convert = type === 'F16' ? float32ToFloat16Bits : float32ToBfloat16Bits;
      const out = new Uint16Array(values.length);
      for (let index = 0; index < values.length; index += 1) out[index] = convert(values[index]!);
      return new Uint8Array(out.buffer);
    }
    case 'Q8_0':
      return quantizedToGgml(quantizeRows(values, rows, columns, 'q8_0'));
    case 'Q4_0':
      return quantizedToGgml(quantizeRows(values, rows, columns, 'q4_0'));
    case 'Q4_K':
    case 'Q5_K':
      return encodeQ4KOrQ5K(type, values);
    case 'Q6_K':
      return encodeQ6K(values);
  }
}

/** Engine quantized blocks in ggml's `block_q8_0` / `block_q4_0` layout: the inverse of ggmlBlocksToQuantized. */
export function quantizedToGgml(blocks: QuantizedBlocks): Uint8Array {
  const count = blocks.scales.length;
  const q8 = blocks.format === 'q8_0';
  const blockBytes = q8 ? 34 : 18;
  const out = new Uint8Array(count * blockBytes);
  const view = new DataView(out.buffer);
  for (let block = 0; block < count; block += 1) {
    const base = block * blockBytes;
    view.setUint16(base, float32ToFloat16Bits(blocks.scales[block]!), true);
    if (q8) {
      for (let index = 0; index < 32; index += 1) out[base + 2 + index] = blocks.codes[block * 32 + index]! ^ 0x80;
    } else {
      const code = (element: number): number => {
        const byte = blocks.codes[block * 16 + (element >> 1)]!;
        return element & 1 ? byte >> 4 : byte & 0x0f;
      };
      for (let index = 0; index < 16; index += 1) out[base + 2 + index] = code(index) | (code(index + 16) << 4);
    }
  }
  return out;
}

const fround = Math.fround;

/** The nearest integer in [low, high]. */
function clampRound(value: number, low: number, high: number): number {
  return Math.max(low, Math.min(high, Math.round(value)));
}

/**
 * Q4_K / Q5_K super-blocks of 256: eight sub-blocks of 32, each `x ≈ d·sc·q − dmin·m` with 6-bit `sc` and `m` and a
 * 4-bit (Q4_K) or 5-bit (Q5_K) `q`: each sub-block's scale spans its range and its min is its smallest value
 * (floored at 0), and the super-block's `d` and `dmin` are the largest of those over 63, as float16.
 */
function encodeQ4KOrQ5K(type: 'Q4_K' | 'Q5_K', values: Float32Array): Uint8Array {
  const levels = type === 'Q4_K' ? 15 : 31;
  const blockBytes = type === 'Q4_K' ? 144 : 176;
  const count = values.length / 256;
  const out = new Uint8Array(count * blockBytes);
  const view = new DataView(out.buffer);
  for (let block = 0; block < count; block += 1) {
    const x = values.subarray(block * 256, (block + 1) * 256);
    const subScales: number[] = [];
    const subMins: number[] = [];
    for (let sub = 0; sub < 8; sub += 1) {
      const part = x.subarray(32 * sub, 32 * sub + 32);
      const low = Math.min(0, ...part);
      const high = Math.max(...part);
      subScales.push((high - low) / levels);
      subMins.push(-low);
    }
    const dBits = float32ToFloat16Bits(Math.max(...subScales) / 63);
    const dminBits = float32ToFloat16Bits(Math.max(...subMins) / 63);
    const d = float16ToFloat32(dBits);
    const dmin = float16ToFloat32(dminBits);
    const base = block * blockBytes;
    view.setUint16(base, dBits, true);
    view.setUint16(base + 2, dminBits, true);
    const sc = subScales.map((scale) => (d === 0 ? 0 : clampRound(scale / d, 0, 63)));
    const m = subMins.map((min) => (dmin === 0 ? 0 : clampRound(min / dmin, 0, 63)));
    // The 12 scale bytes, as get_scale_min_k4 reads them back.
    for (let sub = 0; sub < 4; sub += 1) {
      out[base + 4 + sub] = sc[sub]! | ((sc[sub + 4]! >> 4) << 6);
      out[base + 8 + sub] = m[sub]! | ((m[sub + 4]! >> 4) << 6);
      out[base + 12 + sub] = (sc[sub + 4]! & 0x0f) | ((m[sub + 4]! & 0x0f) << 4);
    }
    const quants = base + (type === 'Q4_K' ? 16 : 48);
    for (let sub = 0; sub < 8; sub += 1) {
      const scale = fround(d * sc[sub]!);
      const offset = fround(dmin * m[sub]!);
      const chunk = sub >> 1;
      for (let index = 0; index < 32; index += 1) {
        const q = scale === 0 ? 0 : clampRound((x[32 * sub + index]! + offset) / scale, 0, levels);
        const byte = quants + 32 * chunk + index;
        out[byte] = out[byte]! | (sub & 1 ? (q & 0x0f) << 4 : q & 0x0f);
        if (type === 'Q5_K' && q > 15) out[base + 16 + index] = out[base + 16 + index]! | ((sub & 1 ? 2 : 1) << (2 * chunk));
      }
    }
  }
  return out;
}

/**
 * Q6_K super-blocks of 256: sixteen sub-blocks of 16, each `x ≈ d·sc·(q − 32)` with an int8 `sc` and a 6-bit `q`
 * (low 4 bits in `ql`, high 2 in `qh`, laid out as dequantize_row_q6_K reads them).
 */
function encodeQ6K(values: Float32Array): Uint8Array {
  const count = values.length / 256;
  const out = new Uint8Array(count * 210);
  const view = new DataView(out.buffer);
  for (let block = 0; block < count; block += 1) {
    const x = values.subarray(block * 256, (block + 1) * 256);
    const subScales: number[] = [];
    for (let sub = 0; sub < 16; sub += 1) {
      const part = x.subarray(16 * sub, 16 * sub + 16);
      subScales.push(Math.max(...part.map(Math.abs)) / 32);
    }
    const dBits = float32ToFloat16Bits(Math.max(...subScales) / 127);
    const d = float16ToFloat32(dBits);
    const base = block * 210;
    view.setUint16(base + 208, dBits, true);
    const sc = subScales.map((scale) => (d === 0 ? 0 : clampRound(scale / d, -128, 127)));
    for (let sub = 0; sub < 16; sub += 1) view.setInt8(base + 192 + sub, sc[sub]!);
    for (let element = 0; element < 256; element += 1) {
      const scale = fround(d * sc[element >> 4]!);
      const q = (scale === 0 ? 0 : clampRound(x[element]! / scale, -32, 31)) + 32;
      // Element e = 128·h + 32·k + l: low 4 bits in ql[64h + l + 32·(k odd)], nibble k >> 1; high 2 in qh[32h + l] at 2k.
      const half = element >> 7;
      const k = (element >> 5) & 3;
      const l = element & 31;
      const lowByte = base + 64 * half + l + 32 * (k & 1);
      out[lowByte] = out[lowByte]! | ((q & 0x0f) << (4 * (k >> 1)));
      const highByte = base + 128 + 32 * half + l;
      out[highByte] = out[highByte]! | ((q >> 4) << (2 * k));
    }
  }
  return out;
}

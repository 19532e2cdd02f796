import { float16ToFloat32 } from './half';
import { blocksPerRow, quantizationBlockSize, type QuantizedBlocks, type QuantizedFormat } from './quantization';

/** The ggml tensor types a GGUF file may hold that Pagoda reads, by their `ggml_type` number. */
export const ggmlTypes = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q8_0: 8,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  BF16: 30,
} as const;

export type GgmlTypeName = keyof typeof ggmlTypes;

/** Elements per block and bytes per block of each readable type (ggml's `ggml_type_traits`). */
export const ggmlBlockLayout: Readonly<Record<GgmlTypeName, { readonly elements: number; readonly bytes: number }>> = {
  F32: { elements: 1, bytes: 4 },
  F16: { elements: 1, bytes: 2 },
  BF16: { elements: 1, bytes: 2 },
  Q4_0: { elements: 32, bytes: 18 },
  Q8_0: { elements: 32, bytes: 34 },
  Q4_K: { elements: 256, bytes: 144 },
  Q5_K: { elements: 256, bytes: 176 },
  Q6_K: { elements: 256, bytes: 210 },
};

/** Names of types a GGUF may hold that Pagoda does not read, so an error can say what it found. */
const otherTypeNames: Readonly<Record<number, string>> = {
  3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS',
  18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32',
  27: 'I64', 28: 'F64', 29: 'IQ1_M', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

/** The readable type of a `ggml_type` number, or undefined. */
export function ggmlTypeName(type: number): GgmlTypeName | undefined {
  return (Object.keys(ggmlTypes) as GgmlTypeName[]).find((name) => ggmlTypes[name] === type);
}

/** What a `ggml_type` number is called, readable or not. */
export function describeGgmlType(type: number): string {
  return ggmlTypeName(type) ?? otherTypeNames[type] ?? `unknown type ${type}`;
}

/** Bytes of `rows` rows of `columns` elements of a readable type. */
export function ggmlRowBytes(type: GgmlTypeName, columns: number): number {
  const { elements, bytes } = ggmlBlockLayout[type];
  return (columns / elements) * bytes;
}

/**
 * How each readable type becomes the engine's: float types widen to float32 exactly; Q8_0 and Q4_0 repack losslessly
 * into MatMulNBits' layout; the K-quants, which MatMulNBits has no layout for, are dequantized and re-quantized to
 * the nearest format that keeps at least their precision (Q4_K to Q4_0, Q5_K and Q6_K to Q8_0).
 */
export const loadedFormatOf: Readonly<Record<GgmlTypeName, 'float32' | QuantizedFormat>> = {
  F32: 'float32',
  F16: 'float32',
  BF16: 'float32',
  Q8_0: 'q8_0',
  Q4_0: 'q4_0',
  Q4_K: 'q4_0',
  Q5_K: 'q8_0',
  Q6_K: 'q8_0',
};

/** Whether a type's blocks are re-quantized on load (and the start-up log says so). */
export function isRequantized(type: GgmlTypeName): boolean {
  return type === 'Q4_K' || type === 'Q5_K' || type === 'Q6_K';
}

/**
 * Q8_0 or Q4_0 blocks of `rows × columns` elements (ggml's `block_q8_0` / `block_q4_0`: a float16 scale, then the
 * codes) in MatMulNBits' layout, value for value:
 *
 * ```text
 * Q8_0  ggml: int8 q, value q·d             MatMulNBits: uint8 q + 128, zero point 128
 * Q4_0  ggml: byte j = q[j] | q[j+16] << 4  MatMulNBits: byte i = q[2i] | q[2i+1] << 4, zero point 8 (both)
 * ```
 */
export function ggmlBlocksToQuantized(type: 'Q8_0' | 'Q4_0', bytes: Uint8Array, rows: number, columns: number): QuantizedBlocks {
  const format: QuantizedFormat = type === 'Q8_0' ? 'q8_0' : 'q4_0';
  const blocks = rows * blocksPerRow(columns);
  const blockBytes = ggmlBlockLayout[type].bytes;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const scales = new Float32Array(blocks);
  const codeBytes = type === 'Q8_0' ? 32 : 16;
  const codes = new Uint8Array(blocks * codeBytes);
  for (let block = 0; block < blocks; block += 1) {
    const base = block * blockBytes;
    scales[block] = float16ToFloat32(view.getUint16(base, true));
    const out = block * codeBytes;
    if (type === 'Q8_0') {
      // int8 two's complement plus 128 is the byte with its top bit flipped.
      for (let index = 0; index < 32; index += 1) codes[out + index] = bytes[base + 2 + index]! ^ 0x80;
    } else {
      for (let index = 0; index < 16; index += 1) {
        // Elements 2i and 2i + 1 of the block: each is the low nibble of byte e (e < 16) or the high one of e - 16.
        const nibble = (element: number): number => (element < 16 ? bytes[base + 2 + element]! & 0x0f : bytes[base + 2 + element - 16]! >> 4);
        codes[out + index] = nibble(2 * index) | (nibble(2 * index + 1) << 4);
      }
    }
  }
  return { format, rows, columns, codes, scales };
}

/** Float32 values of `count` elements of a float type (F32, F16, BF16). */
export function ggmlFloatValues(type: 'F32' | 'F16' | 'BF16', bytes: Uint8Array, count: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (type === 'F32') {
    for (let index = 0; index < count; index += 1) out[index] = view.getFloat32(4 * index, true);
  } else if (type === 'F16') {
    for (let index = 0; index < count; index += 1) out[index] = float16ToFloat32(view.getUint16(2 * index, true));
  } else {
    const bits = new Uint32Array(out.buffer);
    for (let index = 0; index < count; index += 1) bits[index] = view.getUint16(2 * index, true) << 16;
  }
  return out;
}

/**
 * A K-quant's 6-bit scale and min of sub-block `index` (0-7) from the 12 packed bytes at `offset` (ggml's
 * `get_scale_min_k4`): sub-blocks 0-3 keep theirs in the low 6 bits of bytes 0-3 and 4-7; sub-blocks 4-7 keep their
 * low 4 bits in bytes 8-11 and their top 2 in the top bits of bytes 0-7.
 */
function scaleAndMin(bytes: Uint8Array, offset: number, index: number): [number, number] {
  if (index < 4) return [bytes[offset + index]! & 63, bytes[offset + index + 4]! & 63];
  const low = bytes[offset + index + 4]!;
  return [(low & 0x0f) | ((bytes[offset + index - 4]! >> 6) << 4), (low >> 4) | ((bytes[offset + index]! >> 6) << 4)];
}

/**
 * Float32 values of `count` elements of a K-quant (super-blocks of 256), in float32 arithmetic step by step as
 * ggml's `dequantize_row_q4_K`, `_q5_K` and `_q6_K` compute them:
 *
 * ```text
 * Q4_K  d, dmin (f16), 12 bytes of 6-bit scales/mins, 128 bytes of 4-bit q     x = d·sc·q − dmin·m, per 32
 * Q5_K  d, dmin, scales/mins, 32 bytes of 5th bits, 128 bytes of low 4 bits    the same with 5-bit q
 * Q6_K  128 bytes of low 4 bits, 64 of high 2, 16 int8 scales, d (f16)         x = d·sc·(q − 32), per 16
 * ```
 */
export function ggmlKQuantValues(type: 'Q4_K' | 'Q5_K' | 'Q6_K', bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fround = Math.fround;
  const blockBytes = ggmlBlockLayout[type].bytes;
  for (let block = 0; block < count / 256; block += 1) {
    const base = block * blockBytes;
    const y = block * 256;
    if (type === 'Q6_K') {
      const low = base;
      const high = base + 128;
      const scales = base + 192;
      const d = float16ToFloat32(view.getUint16(base + 208, true));
      for (let half = 0; half < 2; half += 1) {
        const ql = low + 64 * half;
        const qh = high + 32 * half;
        const sc = scales + 8 * half;
        const out0 = y + 128 * half;
        for (let l = 0; l < 32; l += 1) {
          const sub = l >> 4;
          const scale = (index: number): number => fround(d * view.getInt8(sc + sub + index));
          const q1 = ((bytes[ql + l]! & 0x0f) | (((bytes[qh + l]! >> 0) & 3) << 4)) - 32;
          const q2 = ((bytes[ql + l + 32]! & 0x0f) | (((bytes[qh + l]! >> 2) & 3) << 4)) - 32;
          const q3 = ((bytes[ql + l]! >> 4) | (((bytes[qh + l]! >> 4) & 3) << 4)) - 32;
          const q4 = ((bytes[ql + l + 32]! >> 4) | (((bytes[qh + l]! >> 6) & 3) << 4)) - 32;
          out[out0 + l] = fround(scale(0) * q1);
          out[out0 + l + 32] = fround(scale(2) * q2);
          out[out0 + l + 64] = fround(scale(4) * q3);
          out[out0 + l + 96] = fround(scale(6) * q4);
        }
      }
      continue;
    }
    const d = float16ToFloat32(view.getUint16(base, true));
    const dmin = float16ToFloat32(view.getUint16(base + 2, true));
    const scales = base + 4;
    const fifthBits = base + 16;
    const quants = type === 'Q4_K' ? base + 16 : base + 48;
    for (let chunk = 0; chunk < 4; chunk += 1) {
      const [scale1, min1] = scaleAndMin(bytes, scales, 2 * chunk);
      const [scale2, min2] = scaleAndMin(bytes, scales, 2 * chunk + 1);
      const d1 = fround(d * scale1);
      const m1 = fround(dmin * min1);
      const d2 = fround(d * scale2);
      const m2 = fround(dmin * min2);
      const q = quants + 32 * chunk;
      for (let l = 0; l < 32; l += 1) {
        let low = bytes[q + l]! & 0x0f;
        let high = bytes[q + l]! >> 4;
        if (type === 'Q5_K') {
          const extra = bytes[fifthBits + l]!;
          if (extra & (1 << (2 * chunk))) low += 16;
          if (extra & (2 << (2 * chunk))) high += 16;
        }
        out[y + 64 * chunk + l] = fround(fround(d1 * low) - m1);
        out[y + 64 * chunk + 32 + l] = fround(fround(d2 * high) - m2);
      }
    }
  }
  return out;
}

/** A block size a K-quant tensor's rows must be a multiple of. */
export const kQuantBlockElements = 256;

/** Readable block-quantized types whose rows are whole 32-element blocks, and which map onto MatMulNBits directly. */
export function isDirectQuantized(type: GgmlTypeName): type is 'Q8_0' | 'Q4_0' {
  return type === 'Q8_0' || type === 'Q4_0';
}

/** Whether a row of `columns` elements can be stored as `type` (whole blocks). */
export function fitsBlocks(type: GgmlTypeName, columns: number): boolean {
  return columns % ggmlBlockLayout[type].elements === 0 && (ggmlBlockLayout[type].elements === 1 || columns % quantizationBlockSize === 0);
}

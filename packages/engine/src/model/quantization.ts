import { float16ToFloat32, float32ToFloat16Bits } from './half';

/** The engine's `quantization` option: weight-only, in blocks of 32 along the input dimension. */
export type Quantization = 'int8' | 'int4';

/**
 * How a quantized weight is stored, named after the llama.cpp format it equals value for value: `q8_0` (int8 codes,
 * one scale per block) or `q4_0` (4-bit codes, one scale per block).
 */
export type QuantizedFormat = 'q8_0' | 'q4_0';

/**
 * MatMulNBits' `accuracy_level` when the engine's `accuracyLevel` option is left out. See the engine README for the
 * measurement behind it.
 */
export const defaultAccuracyLevel = 4;

/** Elements per block, along a row (the input dimension): llama.cpp's QK8_0 and QK4_0. */
export const quantizationBlockSize = 32;

/**
 * A `[rows, columns]` matrix quantized by rows, in the layout ONNX Runtime's `com.microsoft.MatMulNBits` reads:
 *
 * ```text
 * codes   uint8 [rows, blocks, 32 · bits / 8]   q8_0: one code per byte; q4_0: element 2i in the low nibble of
 *                                               byte i, element 2i + 1 in the high one
 * scales  float [rows, blocks]                  each exactly a float16 value (what a GGUF file holds)
 * value = (code - zero) · scale                 zero = 128 (q8_0) or 8 (q4_0): MatMulNBits' default zero points
 * ```
 *
 * `blocks` is `ceil(columns / 32)`; a partial last block is padded with the zero code (probed: MatMulNBits then
 * ignores the padding). The engine quantizes only rows whose length is a multiple of 32, as llama.cpp does.
 */
export interface QuantizedBlocks {
  readonly format: QuantizedFormat;
  readonly rows: number;
  readonly columns: number;
  readonly codes: Uint8Array;
  readonly scales: Float32Array;
}

/** Bits per code of each format. */
export const formatBits: Readonly<Record<QuantizedFormat, 4 | 8>> = { q8_0: 8, q4_0: 4 };

/** The code that stands for zero: MatMulNBits' default zero point, 2^(bits - 1). */
export function zeroCode(format: QuantizedFormat): number {
  return format === 'q8_0' ? 128 : 8;
}

/** Blocks per row. */
export function blocksPerRow(columns: number): number {
  return Math.ceil(columns / quantizationBlockSize);
}

/** Bytes of codes per block. */
export function bytesPerBlock(format: QuantizedFormat): number {
  return (quantizationBlockSize * formatBits[format]) / 8;
}

/** Bytes a quantized `[rows, columns]` matrix holds: codes plus float32 scales. */
export function quantizedByteLength(format: QuantizedFormat, rows: number, columns: number): number {
  const blocks = rows * blocksPerRow(columns);
  return blocks * bytesPerBlock(format) + blocks * 4;
}

/** Whether a row of `columns` elements can be quantized: whole blocks only, as llama.cpp's converter requires. */
export function quantizableColumns(columns: number): boolean {
  return columns > 0 && columns % quantizationBlockSize === 0;
}

/** A float rounded to the nearest float16, as a float (how ggml stores a block's scale). */
function roundToFloat16(value: number): number {
  return float16ToFloat32(float32ToFloat16Bits(value));
}

/** C's `roundf`: halves away from zero (JavaScript's Math.round takes -2.5 to -2, roundf to -3). */
function roundHalfAwayFromZero(value: number): number {
  return value < 0 ? -Math.floor(-value + 0.5) : Math.floor(value + 0.5);
}

/**
 * Quantizes a row-major `[rows, columns]` float32 matrix. The arithmetic is ggml's reference quantizers'
 * (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`), in float32 step by step, so codes and scales equal what
 * llama.cpp writes for the same values:
 *
 * ```text
 * q8_0  d = max|x| / 127            q = roundf(x · (1/d))                 stored: q + 128
 * q4_0  d = m / -8 (m: the value    q = min(15, trunc(x · (1/d) + 8.5))   stored: q
 *       of largest magnitude)
 * ```
 *
 * The codes are computed with the float32 `d`; the stored scale is `d` rounded to float16 (ggml's block header).
 */
export function quantizeRows(values: Float32Array, rows: number, columns: number, format: QuantizedFormat): QuantizedBlocks {
  if (values.length !== rows * columns) throw new RangeError(`cannot quantize ${values.length} values as [${rows}, ${columns}]`);
  const blocks = blocksPerRow(columns);
  const blockBytes = bytesPerBlock(format);
  const codes = new Uint8Array(rows * blocks * blockBytes);
  const scales = new Float32Array(rows * blocks);
  const zero = zeroCode(format);
  const fround = Math.fround;
  for (let row = 0; row < rows; row += 1) {
    for (let block = 0; block < blocks; block += 1) {
      const start = row * columns + block * quantizationBlockSize;
      const length = Math.min(quantizationBlockSize, columns - block * quantizationBlockSize);
      let largestMagnitude = 0;
      let largest = 0;
      for (let index = 0; index < length; index += 1) {
        const value = values[start + index]!;
        if (Math.abs(value) > largestMagnitude) {
          largestMagnitude = Math.abs(value);
          largest = value;
        }
      }
      const scale = format === 'q8_0' ? fround(largestMagnitude / 127) : fround(largest / -8);
      const inverse = scale === 0 ? 0 : fround(1 / scale);
      const blockIndex = row * blocks + block;
      scales[blockIndex] = roundToFloat16(scale);
      const base = blockIndex * blockBytes;
      if (format === 'q8_0') {
        for (let index = 0; index < quantizationBlockSize; index += 1) {
          codes[base + index] = index < length ? roundHalfAwayFromZero(fround(values[start + index]! * inverse)) + zero : zero;
        }
      } else {
        for (let index = 0; index < quantizationBlockSize; index += 1) {
          const code = index < length ? Math.min(15, Math.trunc(fround(fround(values[start + index]! * inverse) + 8.5))) : zero;
          codes[base + (index >> 1)] = codes[base + (index >> 1)]! | (index & 1 ? code << 4 : code);
        }
      }
    }
  }
  return { format, rows, columns, codes, scales };
}

/** The float32 values quantized blocks stand for: `(code - zero) · scale`, written into `values` when given. */
export function dequantizeRows(blocks: QuantizedBlocks, values = new Float32Array(blocks.rows * blocks.columns)): Float32Array {
  const { format, rows, columns, codes, scales } = blocks;
  const perRow = blocksPerRow(columns);
  const blockBytes = bytesPerBlock(format);
  const zero = zeroCode(format);
  for (let row = 0; row < rows; row += 1) {
    for (let column = 0; column < columns; column += 1) {
      const block = row * perRow + Math.floor(column / quantizationBlockSize);
      const within = column % quantizationBlockSize;
      const byte = codes[block * blockBytes + (format === 'q8_0' ? within : within >> 1)]!;
      const code = format === 'q8_0' ? byte : within & 1 ? byte >> 4 : byte & 0x0f;
      values[row * columns + column] = (code - zero) * scales[block]!;
    }
  }
  return values;
}

/** Rows `[start, end)` of quantized blocks, as views (no copy). */
export function quantizedRows(blocks: QuantizedBlocks, start: number, end: number): QuantizedBlocks {
  const perRow = blocksPerRow(blocks.columns);
  const blockBytes = bytesPerBlock(blocks.format);
  return {
    format: blocks.format,
    rows: end - start,
    columns: blocks.columns,
    codes: blocks.codes.subarray(start * perRow * blockBytes, end * perRow * blockBytes),
    scales: blocks.scales.subarray(start * perRow, end * perRow),
  };
}

/**
 * Columns `[start, end)` of quantized blocks (a row-parallel shard under tensor parallelism). Both ends must fall on
 * block boundaries, so the shard holds exactly the blocks one rank would quantize from its own columns.
 */
export function quantizedColumns(blocks: QuantizedBlocks, start: number, end: number): QuantizedBlocks {
  if (start % quantizationBlockSize !== 0 || (end % quantizationBlockSize !== 0 && end !== blocks.columns)) {
    throw new RangeError(`columns [${start}, ${end}) do not fall on ${quantizationBlockSize}-element block boundaries`);
  }
  const perRow = blocksPerRow(blocks.columns);
  const firstBlock = start / quantizationBlockSize;
  const shardBlocks = blocksPerRow(end - start);
  const blockBytes = bytesPerBlock(blocks.format);
  const codes = new Uint8Array(blocks.rows * shardBlocks * blockBytes);
  const scales = new Float32Array(blocks.rows * shardBlocks);
  for (let row = 0; row < blocks.rows; row += 1) {
    const from = row * perRow + firstBlock;
    codes.set(blocks.codes.subarray(from * blockBytes, (from + shardBlocks) * blockBytes), row * shardBlocks * blockBytes);
    scales.set(blocks.scales.subarray(from, from + shardBlocks), row * shardBlocks);
  }
  return { format: blocks.format, rows: blocks.rows, columns: end - start, codes, scales };
}

/** Quantized matrices with the same row length, stacked by rows (q/k/v or gate/up packed into one projection). */
export function concatQuantizedRows(parts: readonly QuantizedBlocks[]): QuantizedBlocks {
  const [first] = parts;
  if (first === undefined) throw new RangeError('nothing to concatenate');
  if (parts.some((part) => part.format !== first.format || part.columns !== first.columns)) {
    throw new RangeError('only quantized matrices of one format and row length stack');
  }
  const codes = new Uint8Array(parts.reduce((sum, part) => sum + part.codes.length, 0));
  const scales = new Float32Array(parts.reduce((sum, part) => sum + part.scales.length, 0));
  let codeOffset = 0;
  let scaleOffset = 0;
  for (const part of parts) {
    codes.set(part.codes, codeOffset);
    scales.set(part.scales, scaleOffset);
    codeOffset += part.codes.length;
    scaleOffset += part.scales.length;
  }
  return { format: first.format, rows: parts.reduce((sum, part) => sum + part.rows, 0), columns: first.columns, codes, scales };
}

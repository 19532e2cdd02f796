import {
  blocksPerRow,
  bytesPerBlock,
  concatQuantizedRows,
  quantizableColumns,
  quantizationBlockSize,
  quantizedColumns,
  quantizedByteLength,
  type QuantizedBlocks,
  type QuantizedFormat,
  quantizedRows,
  quantizeRows,
} from './quantization';

/** Rows `[start, end)` of a weight's first axis. */
export interface RowRange {
  readonly start: number;
  readonly end: number;
}

/** How a weight's values are stored: float32, or blocks quantized as llama.cpp's Q8_0 / Q4_0. */
export type WeightFormat = 'float32' | QuantizedFormat;

/**
 * A float32 weight. Its values are read only when the graph's weight file is written (see WeightFile), one tensor at
 * a time, so a model's weights never sit in memory all at once beside the copy ONNX Runtime makes.
 */
export interface FloatWeight {
  readonly format: 'float32';
  readonly shape: readonly number[];
  /** Row-major values of rows `[start, end)` of the first axis (all rows by default). */
  read(rows?: RowRange): Promise<Float32Array>;
}

/** A `[rows, columns]` weight quantized by rows (see QuantizedBlocks), read as FloatWeight is. */
export interface QuantizedWeight {
  readonly format: QuantizedFormat;
  readonly shape: readonly [number, number];
  read(rows?: RowRange): Promise<QuantizedBlocks>;
}

/** A weight of the model, float or quantized. */
export type WeightTensor = FloatWeight | QuantizedWeight;

/** Weights by their Hugging Face name (`model.layers.0.self_attn.q_proj.weight`). */
export type ModelWeights = ReadonlyMap<string, WeightTensor>;

/** A tensor the caller needs, with the shape the config implies. */
export interface WantedTensor {
  readonly name: string;
  readonly shape: readonly number[];
}

/** A float weight over values already in memory; `read` returns views of them. */
export function floatWeight(shape: readonly number[], data: Float32Array): FloatWeight {
  const rowSize = shape.length <= 1 ? 1 : shape.slice(1).reduce((product, dim) => product * dim, 1);
  return {
    format: 'float32',
    shape,
    read: (rows) => Promise.resolve(rows === undefined ? data : data.subarray(rows.start * rowSize, rows.end * rowSize)),
  };
}

/** A quantized weight over blocks already in memory. */
export function quantizedWeight(blocks: QuantizedBlocks): QuantizedWeight {
  return {
    format: blocks.format,
    shape: [blocks.rows, blocks.columns],
    read: (rows) => Promise.resolve(rows === undefined ? blocks : quantizedRows(blocks, rows.start, rows.end)),
  };
}

/** Values of one row: the product of every axis but the first. */
export function rowLength(shape: readonly number[]): number {
  return shape.length <= 1 ? 1 : shape.slice(1).reduce((product, dim) => product * dim, 1);
}

/** Bytes a weight holds in its format ("as held": float32, or codes plus float32 scales). */
export function heldBytes(tensor: { readonly format: WeightFormat; readonly shape: readonly number[] }): number {
  if (tensor.format === 'float32') return 4 * tensor.shape.reduce((product, dim) => product * dim, 1);
  return quantizedByteLength(tensor.format, tensor.shape[0]!, tensor.shape[1]!);
}

/**
 * Rows read at once while quantizing: about 1 MiB of float32, so a large embedding never sits whole in memory, and
 * the chunks, all one size, reuse the same freed memory rather than growing the heap.
 */
const quantizeChunkBytes = 2 ** 20;

/**
 * `source` quantized to `format` when it is read, a bounded number of rows at a time. A weight whose rows are not
 * whole blocks (see quantizableColumns) stays float32, as llama.cpp's converter keeps it at a wider type.
 */
export function quantizeWeight(source: WeightTensor, format: QuantizedFormat): WeightTensor {
  if (source.format !== 'float32' || source.shape.length !== 2 || !quantizableColumns(source.shape[1]!)) return source;
  const [rows, columns] = source.shape as [number, number];
  const chunkRows = Math.max(1, Math.floor(quantizeChunkBytes / (4 * columns)));
  return {
    format,
    shape: [rows, columns],
    read: async (range) => {
      const start = range?.start ?? 0;
      const end = range?.end ?? rows;
      const perRow = blocksPerRow(columns);
      const codes = new Uint8Array((end - start) * perRow * bytesPerBlock(format));
      const scales = new Float32Array((end - start) * perRow);
      for (let first = start; first < end; first += chunkRows) {
        const last = Math.min(end, first + chunkRows);
        const chunk = quantizeRows(await source.read({ start: first, end: last }), last - first, columns, format);
        codes.set(chunk.codes, (first - start) * perRow * bytesPerBlock(format));
        scales.set(chunk.scales, (first - start) * perRow);
      }
      return { format, rows: end - start, columns, codes, scales };
    },
  };
}

/** Reads a float weight, failing with a clear message when it is quantized (norms, biases and q/k norms are never). */
export async function readFloat(tensor: WeightTensor, name: string, rows?: RowRange): Promise<Float32Array> {
  if (tensor.format !== 'float32') throw new TypeError(`weight ${name} is ${tensor.format}; a float32 weight is needed here`);
  return tensor.read(rows);
}

/**
 * Weights of one format and row length stacked by rows, read when the result is (packed q/k/v or gate/up of the
 * GPU graph). Undefined when the formats differ (a GGUF may store q_proj and v_proj at different types).
 */
export function concatWeights(parts: readonly WeightTensor[]): WeightTensor | undefined {
  const [first] = parts;
  if (first === undefined || parts.some((part) => part.format !== first.format || rowLength(part.shape) !== rowLength(first.shape))) return undefined;
  const rows = parts.reduce((sum, part) => sum + part.shape[0]!, 0);
  const shape = [rows, ...first.shape.slice(1)];
  if (first.format === 'float32') {
    return floatWeightReadOnce(shape, async () => {
      const arrays = await Promise.all(parts.map((part) => readFloat(part, 'a packed part')));
      const out = new Float32Array(arrays.reduce((sum, array) => sum + array.length, 0));
      let offset = 0;
      for (const array of arrays) {
        out.set(array, offset);
        offset += array.length;
      }
      return out;
    });
  }
  const format = first.format;
  return {
    format,
    shape: [rows, first.shape[1]!],
    read: async (range) => {
      const blocks = concatQuantizedRows(await Promise.all(parts.map((part) => part.read() as Promise<QuantizedBlocks>)));
      return range === undefined ? blocks : quantizedRows(blocks, range.start, range.end);
    },
  };
}

function floatWeightReadOnce(shape: readonly number[], read: () => Promise<Float32Array>): FloatWeight {
  const perRow = rowLength(shape);
  return {
    format: 'float32',
    shape,
    read: async (range) => {
      const values = await read();
      return range === undefined ? values : values.subarray(range.start * perRow, range.end * perRow);
    },
  };
}

/** Rows `[range.start, range.end)` of `tensor` (a column-parallel shard), read from the source only when read. */
export function weightRows(tensor: WeightTensor, range: RowRange): WeightTensor {
  const count = range.end - range.start;
  const within = (rows: RowRange | undefined): RowRange => ({ start: range.start + (rows?.start ?? 0), end: range.start + (rows?.end ?? count) });
  if (tensor.format === 'float32') {
    return { format: 'float32', shape: [count, ...tensor.shape.slice(1)], read: (rows) => tensor.read(within(rows)) };
  }
  return { format: tensor.format, shape: [count, tensor.shape[1]], read: (rows) => tensor.read(within(rows)) };
}

/**
 * Columns `[range.start, range.end)` of a `[rows, columns]` weight (a row-parallel shard). A quantized weight's
 * shard must fall on block boundaries (see quantizedColumns), so it holds the very blocks of the whole weight.
 */
export function weightColumns(tensor: WeightTensor, range: RowRange): WeightTensor {
  const [height, width] = tensor.shape as [number, number];
  const count = range.end - range.start;
  if (tensor.format === 'float32') {
    return floatWeightReadOnce([height, count], async () => {
      const data = await tensor.read();
      const shard = new Float32Array(height * count);
      for (let row = 0; row < height; row += 1) shard.set(data.subarray(row * width + range.start, row * width + range.end), row * count);
      return shard;
    });
  }
  if (!columnShardFallsOnBlocks(range, width)) {
    throw new RangeError(`columns [${range.start}, ${range.end}) of a ${tensor.format} weight do not fall on its ${quantizationBlockSize}-element blocks`);
  }
  return {
    format: tensor.format,
    shape: [height, count],
    read: async (rows) => quantizedColumns(await tensor.read(rows), range.start, range.end),
  };
}

/** Whether columns `range` of a row of `width` start and end on block boundaries (or at the row's end). */
export function columnShardFallsOnBlocks(range: RowRange, width: number): boolean {
  return range.start % quantizationBlockSize === 0 && (range.end % quantizationBlockSize === 0 || range.end === width);
}

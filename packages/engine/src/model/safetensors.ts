import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError } from '../errors';
import { readJsonFile } from '../json-file';
import { float16ToFloat32 } from './half';
import { type FloatWeight, type RowRange, rowLength, type WantedTensor } from './weight-tensor';

export { float16ToFloat32 };

/** Where one tensor lives: its file, its stored dtype and shape, and its byte range in that file. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly file: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

const bytesPerElement: Readonly<Record<string, number>> = { F32: 4, F16: 2, BF16: 2 };

/**
 * Reads the headers of a checkpoint's safetensors: `model.safetensors`, or the shards that
 * `model.safetensors.index.json` lists. Only headers are read; tensor data stays on disk until
 * {@link readSafetensorsTensors}.
 */
export async function readSafetensorsIndex(
  modelDir: string,
): Promise<{ indexFile: string; entries: Map<string, SafetensorsEntry> }> {
  const indexFile = join(modelDir, 'model.safetensors.index.json');
  const index = (await readJsonFile(indexFile, {
    optional: true,
    error: (problem, cause) =>
      problem === 'unreadable'
        ? new CheckpointError('checkpoint_file_missing', indexFile, 'cannot be read', { cause })
        : new CheckpointError('checkpoint_file_invalid', indexFile, `is not a valid index (${(cause as Error).message})`, { cause }),
  })) as { weight_map?: unknown } | undefined;
  if (index === undefined) {
    const file = join(modelDir, 'model.safetensors');
    return { indexFile: file, entries: await readSafetensorsHeader(file) };
  }
  if (typeof index.weight_map !== 'object' || index.weight_map === null) {
    throw new CheckpointError('checkpoint_file_invalid', indexFile, 'is not a valid index (no weight_map object)');
  }
  const weightMap = index.weight_map as Record<string, unknown>;
  const entries = new Map<string, SafetensorsEntry>();
  const shards = [...new Set(Object.values(weightMap).filter((value): value is string => typeof value === 'string'))];
  const headers = await Promise.all(shards.map((shard) => readSafetensorsHeader(join(modelDir, shard))));
  for (const header of headers) for (const [name, entry] of header) entries.set(name, entry);
  // A tensor the index promises but its shard lacks is reported against the shard, where the reader will look.
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard === 'string' && !entries.has(name)) {
      entries.set(name, { name, file: join(modelDir, shard), dtype: 'missing', shape: [], begin: 0, end: 0 });
    }
  }
  return { indexFile, entries };
}

/** Parses one safetensors header and checks every byte range against the file's size. */
export async function readSafetensorsHeader(file: string): Promise<Map<string, SafetensorsEntry>> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new CheckpointError('checkpoint_file_missing', file, 'cannot be opened', { cause: error });
  }
  try {
    const { size } = await handle.stat();
    if (size < 8) throw new CheckpointError('checkpoint_file_truncated', file, `is ${size} bytes, shorter than the 8-byte header length`);
    const lengthBytes = Buffer.alloc(8);
    await handle.read(lengthBytes, 0, 8, 0);
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (8 + headerLength > size) {
      throw new CheckpointError('checkpoint_file_truncated', file, `declares a ${headerLength}-byte header but holds ${size} bytes`);
    }
    const headerBytes = Buffer.alloc(headerLength);
    await handle.read(headerBytes, 0, headerLength, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBytes.toString('utf8')) as Record<string, unknown>;
    } catch (error) {
      throw new CheckpointError('checkpoint_file_invalid', file, 'has a header that is not valid JSON', { cause: error });
    }
    const dataStart = 8 + headerLength;
    const entries = new Map<string, SafetensorsEntry>();
    for (const [name, value] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const offsets = info.data_offsets;
      if (
        typeof info.dtype !== 'string' ||
        !Array.isArray(info.shape) ||
        !Array.isArray(offsets) ||
        offsets.length !== 2 ||
        !info.shape.every((dim) => Number.isInteger(dim) && dim >= 0)
      ) {
        throw new CheckpointError('checkpoint_file_invalid', file, 'has a malformed header entry', { tensor: name });
      }
      const [begin, end] = offsets as [number, number];
      const shape = info.shape as number[];
      const entry: SafetensorsEntry = { name, file, dtype: info.dtype, shape, begin: dataStart + begin, end: dataStart + end };
      if (dataStart + end > size) {
        throw new CheckpointError(
          'checkpoint_file_truncated',
          file,
          `ends at byte ${size} but the tensor's data runs to byte ${dataStart + end}`,
          { tensor: name },
        );
      }
      const elementBytes = bytesPerElement[info.dtype];
      if (elementBytes !== undefined && (end - begin) !== elementBytes * product(shape)) {
        throw new CheckpointError(
          'checkpoint_file_invalid',
          file,
          `holds ${end - begin} bytes for a ${info.dtype} tensor of shape [${shape.join(', ')}]`,
          { tensor: name },
        );
      }
      entries.set(name, entry);
    }
    return entries;
  } finally {
    await handle.close();
  }
}

/**
 * The wanted tensors as float32 weights (bf16 and f16 converted when read), each checked now against the shape the
 * config implies; their data is read only when a weight is read (see FloatWeight). `indexFile` is named when a
 * tensor is in no file. `onProgress` hears the bytes read so far out of the total.
 */
export async function readSafetensorsTensors(
  entries: ReadonlyMap<string, SafetensorsEntry>,
  wanted: readonly WantedTensor[],
  options: { indexFile: string; onProgress?: (loadedBytes: number, totalBytes: number) => void },
): Promise<Map<string, FloatWeight>> {
  const planned: SafetensorsEntry[] = [];
  for (const tensor of wanted) {
    const entry = entries.get(tensor.name);
    if (entry === undefined || entry.dtype === 'missing') {
      throw new CheckpointError('checkpoint_tensor_missing', entry?.file ?? options.indexFile, 'is missing', {
        tensor: tensor.name,
      });
    }
    if (bytesPerElement[entry.dtype] === undefined) {
      throw new CheckpointError(
        'checkpoint_tensor_dtype',
        entry.file,
        `has dtype ${entry.dtype}; supported: ${Object.keys(bytesPerElement).join(', ')}`,
        { tensor: tensor.name },
      );
    }
    if (entry.shape.length !== tensor.shape.length || entry.shape.some((dim, axis) => dim !== tensor.shape[axis])) {
      throw new CheckpointError(
        'checkpoint_tensor_shape',
        entry.file,
        `has shape [${entry.shape.join(', ')}] where the config implies [${tensor.shape.join(', ')}]`,
        { tensor: tensor.name, expectedShape: tensor.shape, actualShape: entry.shape },
      );
    }
    planned.push(entry);
  }

  const totalBytes = planned.reduce((sum, entry) => sum + entry.end - entry.begin, 0);
  let loadedBytes = 0;
  const result = new Map<string, FloatWeight>();
  for (const entry of planned) {
    result.set(entry.name, {
      format: 'float32',
      shape: entry.shape,
      read: async (rows) => {
        const handle = await open(entry.file, 'r');
        try {
          const data = await readAsFloat32(handle, entry, rows);
          loadedBytes = Math.min(totalBytes, loadedBytes + (data.length * (entry.end - entry.begin)) / product(entry.shape));
          options.onProgress?.(loadedBytes, totalBytes);
          return data;
        } finally {
          await handle.close();
        }
      },
    });
  }
  return result;
}

async function readAsFloat32(handle: Awaited<ReturnType<typeof open>>, entry: SafetensorsEntry, rows: RowRange | undefined): Promise<Float32Array> {
  const elementBytes = bytesPerElement[entry.dtype]!;
  const perRow = rowLength(entry.shape);
  const firstElement = (rows?.start ?? 0) * perRow;
  const count = rows === undefined ? product(entry.shape) : (rows.end - rows.start) * perRow;
  const begin = entry.begin + firstElement * elementBytes;
  const out = new Float32Array(count);
  if (entry.dtype === 'F32') {
    await readFully(handle, new Uint8Array(out.buffer), entry, begin);
    return out;
  }
  // Half-width values are read into the upper half of the output's own buffer and widened front to back, so a
  // tensor needs no second allocation: element i is read from bytes [2·count + 2i, ...) before slot i (bytes
  // [4i, 4i + 4)) is written, and 4i + 4 <= 2·count + 2i holds for every i < count.
  const halves = new Uint16Array(out.buffer, count * 2, count);
  await readFully(handle, new Uint8Array(out.buffer, count * 2, count * 2), entry, begin);
  const bits = new Uint32Array(out.buffer);
  if (entry.dtype === 'BF16') {
    for (let index = 0; index < count; index += 1) bits[index] = halves[index]! << 16;
  } else {
    for (let index = 0; index < count; index += 1) out[index] = float16ToFloat32(halves[index]!);
  }
  return out;
}

async function readFully(handle: Awaited<ReturnType<typeof open>>, target: Uint8Array, entry: SafetensorsEntry, begin: number): Promise<void> {
  let offset = 0;
  while (offset < target.byteLength) {
    const { bytesRead } = await handle.read(target, offset, target.byteLength - offset, begin + offset);
    if (bytesRead === 0) {
      throw new CheckpointError('checkpoint_file_truncated', entry.file, 'ended while its data was being read', {
        tensor: entry.name,
      });
    }
    offset += bytesRead;
  }
}

function product(shape: readonly number[]): number {
  return shape.reduce((total, dim) => total * dim, 1);
}


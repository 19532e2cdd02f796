import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError } from '../errors';
import { readJsonFile } from '../json-file';

/** A weight as the engine keeps it: float32 values in row-major order. */
export interface WeightTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Weights by their Hugging Face name (`model.layers.0.self_attn.q_proj.weight`). */
export type ModelWeights = ReadonlyMap<string, WeightTensor>;

/** Where one tensor lives: its file, its stored dtype and shape, and its byte range in that file. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly file: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/** A tensor the caller needs, with the shape the config implies. */
export interface WantedTensor {
  readonly name: string;
  readonly shape: readonly number[];
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
 * Reads the wanted tensors as float32 (bf16 and f16 converted here), checking each against the shape the config
 * implies. `indexFile` is named when a tensor is in no file. `onProgress` hears the bytes read so far out of the total.
 */
export async function readSafetensorsTensors(
  entries: ReadonlyMap<string, SafetensorsEntry>,
  wanted: readonly WantedTensor[],
  options: { indexFile: string; onProgress?: (loadedBytes: number, totalBytes: number) => void },
): Promise<Map<string, WeightTensor>> {
  const planned: { wanted: WantedTensor; entry: SafetensorsEntry }[] = [];
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
    planned.push({ wanted: tensor, entry });
  }

  const totalBytes = planned.reduce((sum, { entry }) => sum + entry.end - entry.begin, 0);
  let loadedBytes = 0;
  const result = new Map<string, WeightTensor>();
  const byFile = new Map<string, typeof planned>();
  for (const item of planned) byFile.set(item.entry.file, [...(byFile.get(item.entry.file) ?? []), item]);
  for (const [file, items] of byFile) {
    const handle = await open(file, 'r');
    try {
      for (const { entry } of items) {
        const data = await readAsFloat32(handle, entry);
        result.set(entry.name, { shape: entry.shape, data });
        loadedBytes += entry.end - entry.begin;
        options.onProgress?.(loadedBytes, totalBytes);
      }
    } finally {
      await handle.close();
    }
  }
  return result;
}

async function readAsFloat32(handle: Awaited<ReturnType<typeof open>>, entry: SafetensorsEntry): Promise<Float32Array> {
  const count = product(entry.shape);
  const out = new Float32Array(count);
  if (entry.dtype === 'F32') {
    await readFully(handle, new Uint8Array(out.buffer), entry);
    return out;
  }
  // Half-width values are read into the upper half of the output's own buffer and widened front to back, so a
  // tensor needs no second allocation: element i is read from bytes [2·count + 2i, ...) before slot i (bytes
  // [4i, 4i + 4)) is written, and 4i + 4 <= 2·count + 2i holds for every i < count.
  const halves = new Uint16Array(out.buffer, count * 2, count);
  await readFully(handle, new Uint8Array(out.buffer, count * 2, count * 2), entry);
  const bits = new Uint32Array(out.buffer);
  if (entry.dtype === 'BF16') {
    for (let index = 0; index < count; index += 1) bits[index] = halves[index]! << 16;
  } else {
    for (let index = 0; index < count; index += 1) out[index] = float16ToFloat32(halves[index]!);
  }
  return out;
}

async function readFully(handle: Awaited<ReturnType<typeof open>>, target: Uint8Array, entry: SafetensorsEntry): Promise<void> {
  let offset = 0;
  while (offset < target.byteLength) {
    const { bytesRead } = await handle.read(target, offset, target.byteLength - offset, entry.begin + offset);
    if (bytesRead === 0) {
      throw new CheckpointError('checkpoint_file_truncated', entry.file, 'ended while its data was being read', {
        tensor: entry.name,
      });
    }
    offset += bytesRead;
  }
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

function product(shape: readonly number[]): number {
  return shape.reduce((total, dim) => total * dim, 1);
}


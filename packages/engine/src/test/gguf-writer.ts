import { open } from 'node:fs/promises';
import { ggmlBlockLayout, type GgmlTypeName, ggmlTypes } from '../model/ggml-blocks';

/**
 * GGUF v3, little-endian, as llama.cpp writes it (for tests and peer benchmarks: the engine only reads GGUF):
 *
 * ```
 * "GGUF" u32:3  u64:tensor_count  u64:kv_count
 * kv_count × (string key, u32 type, value)              string = u64 byte length + UTF-8 bytes
 * tensor_count × (string name, u32 n_dims, u64 ne[n_dims] fastest dim first, u32 ggml_type, u64 offset)
 * padding to `alignment`, then each tensor's data at its offset (each offset a multiple of `alignment`)
 * ```
 */
export const ggufValueType = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

type ScalarType = Exclude<keyof typeof ggufValueType, 'array'>;

export type GgufValue =
  | { readonly type: ScalarType; readonly value: number | bigint | boolean | string }
  | { readonly type: 'array'; readonly elementType: ScalarType; readonly values: ReadonlyArray<number | bigint | boolean | string> };

/** A tensor to write: its name, shape, ggml type and the bytes of its blocks (made when the tensor is written). */
export interface GgufTensor {
  readonly name: string;
  /** Row-major shape as PyTorch and safetensors write it (slowest dimension first); GGUF stores it reversed. */
  readonly shape: readonly number[];
  readonly type: GgmlTypeName;
  readonly data: () => Uint8Array | Promise<Uint8Array>;
}

export const ggufAlignment = 32;

/** Bytes of a tensor of `shape` stored as `type`. */
export function ggufTensorBytes(type: GgmlTypeName, shape: readonly number[]): number {
  const elements = shape.reduce((product, dim) => product * dim, 1);
  const { elements: perBlock, bytes } = ggmlBlockLayout[type];
  if (shape.length > 0 && shape[shape.length - 1]! % perBlock !== 0) throw new Error(`rows of ${shape[shape.length - 1]} elements are not whole ${type} blocks`);
  return (elements / perBlock) * bytes;
}

/** Builds the bytes of values and headers; tensors' data are written separately so no copy of them is made. */
class ByteBuilder {
  private chunks: Buffer[] = [];
  length = 0;

  private push(buffer: Buffer): void {
    this.chunks.push(buffer);
    this.length += buffer.length;
  }

  u32(value: number): void {
    const buffer = Buffer.alloc(4);
    buffer.writeUInt32LE(value);
    this.push(buffer);
  }

  u64(value: number | bigint): void {
    const buffer = Buffer.alloc(8);
    buffer.writeBigUInt64LE(BigInt(value));
    this.push(buffer);
  }

  string(text: string): void {
    const bytes = Buffer.from(text, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }

  scalar(type: ScalarType, value: number | bigint | boolean | string): void {
    const sizes: Record<ScalarType, number> = { uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, bool: 1, string: 0, uint64: 8, int64: 8, float64: 8 };
    if (type === 'string') {
      this.string(String(value));
      return;
    }
    const buffer = Buffer.alloc(sizes[type]);
    switch (type) {
      case 'uint8':
        buffer.writeUInt8(Number(value));
        break;
      case 'int8':
        buffer.writeInt8(Number(value));
        break;
      case 'uint16':
        buffer.writeUInt16LE(Number(value));
        break;
      case 'int16':
        buffer.writeInt16LE(Number(value));
        break;
      case 'uint32':
        buffer.writeUInt32LE(Number(value));
        break;
      case 'int32':
        buffer.writeInt32LE(Number(value));
        break;
      case 'float32':
        buffer.writeFloatLE(Number(value));
        break;
      case 'bool':
        buffer.writeUInt8(value ? 1 : 0);
        break;
      case 'uint64':
        buffer.writeBigUInt64LE(BigInt(value));
        break;
      case 'int64':
        buffer.writeBigInt64LE(BigInt(value));
        break;
      case 'float64':
        buffer.writeDoubleLE(Number(value));
        break;
    }
    this.push(buffer);
  }

  padTo(alignment: number): void {
    const padding = (alignment - (this.length % alignment)) % alignment;
    if (padding > 0) this.push(Buffer.alloc(padding));
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** The header: magic, counts, metadata and tensor infos, padded to the alignment; and each tensor's data offset. */
export function ggufHeader(metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[]): { header: Buffer; offsets: number[] } {
  const builder = new ByteBuilder();
  builder.u32(0x46554747); // "GGUF" read as a little-endian u32
  builder.u32(3);
  builder.u64(tensors.length);
  builder.u64(metadata.size);
  for (const [key, value] of metadata) {
    builder.string(key);
    builder.u32(ggufValueType[value.type]);
    if (value.type === 'array') {
      builder.u32(ggufValueType[value.elementType]);
      builder.u64(value.values.length);
      for (const element of value.values) builder.scalar(value.elementType, element);
    } else {
      builder.scalar(value.type, value.value);
    }
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const tensor of tensors) {
    builder.string(tensor.name);
    builder.u32(tensor.shape.length);
    for (const dim of [...tensor.shape].reverse()) builder.u64(dim);
    builder.u32(ggmlTypes[tensor.type]);
    builder.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(ggufTensorBytes(tensor.type, tensor.shape) / ggufAlignment) * ggufAlignment;
  }
  builder.padTo(ggufAlignment);
  return { header: builder.toBuffer(), offsets };
}

/** Writes a GGUF file: the header, then each tensor's blocks at its aligned offset, made one tensor at a time. */
export async function writeGguf(file: string, metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[]): Promise<void> {
  const { header, offsets } = ggufHeader(metadata, tensors);
  const handle = await open(file, 'w');
  try {
    await handle.write(header, 0, header.length, 0);
    for (let index = 0; index < tensors.length; index++) {
      const tensor = tensors[index]!;
      const data = await tensor.data();
      if (data.byteLength !== ggufTensorBytes(tensor.type, tensor.shape)) {
        throw new Error(`tensor ${tensor.name}: ${data.byteLength} bytes for a ${tensor.type} tensor of shape [${tensor.shape.join(', ')}]`);
      }
      await handle.write(data, 0, data.byteLength, header.length + offsets[index]!);
    }
    // The last tensor's padding, so the file ends on the alignment as llama.cpp's writer leaves it.
    const lastTensor = tensors.at(-1);
    const end = lastTensor === undefined ? 0 : offsets.at(-1)! + Math.ceil(ggufTensorBytes(lastTensor.type, lastTensor.shape) / ggufAlignment) * ggufAlignment;
    await handle.truncate(header.length + end);
  } finally {
    await handle.close();
  }
}

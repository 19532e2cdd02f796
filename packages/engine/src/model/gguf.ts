import { open } from 'node:fs/promises';
import { GgufError } from '../errors';
import {
  describeGgmlType,
  ggmlBlockLayout,
  ggmlBlocksToQuantized,
  ggmlFloatValues,
  ggmlKQuantValues,
  ggmlRowBytes,
  type GgmlTypeName,
  ggmlTypeName,
  isDirectQuantized,
  isRequantized,
  loadedFormatOf,
} from './ggml-blocks';
import type { ModelConfig } from './model-config';
import { expectedWeights } from './model-weights';
import { quantizeRows, type QuantizedBlocks } from './quantization';
import type { ModelWeights, RowRange, WeightFormat, WeightTensor } from './weight-tensor';

/** A metadata value as read: numbers (64-bit integers as bigint), booleans, strings, or arrays of them. */
export type GgufMetadataValue = number | bigint | boolean | string | GgufMetadataValue[];

/** One tensor's header entry: dimensions fastest first (ggml's `ne`), type, and where its data lies in the file. */
export interface GgufTensorInfo {
  readonly name: string;
  readonly dimensions: readonly number[];
  readonly type: number;
  /** Absolute byte offset of the data in the file. */
  readonly offset: number;
  /** Bytes of data, for a readable type (0 otherwise). */
  readonly byteLength: number;
}

/** A GGUF file's header: version, metadata, and the tensors' places. */
export interface GgufHeader {
  readonly file: string;
  readonly version: number;
  /** Every key; arrays of more than 4096 elements (the vocabulary's tokens, scores, merges) are left empty. */
  readonly metadata: ReadonlyMap<string, GgufMetadataValue>;
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
}

const ggufMagic = 0x46554747; // "GGUF" read as a little-endian u32

/** Metadata arrays longer than this are read past and kept empty (see GgufHeader.metadata). */
const maxKeptArrayLength = 4096;

/** Bytes of one value of each fixed-width GGUF value type (all but string and array). */
const scalarWidths: Readonly<Record<number, number>> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Thrown inside the header parser when the bytes read so far end: read more, or report truncation. */
class NeedMoreBytes extends Error {}

/**
 * Reads a GGUF file's header (v2 and v3, little-endian): the metadata key-value pairs and the tensor infos, checking
 * every tensor's data range against the file's size. Hand-written rather than taken from `@huggingface/gguf` (the
 * npm GGUF reader): probed with 0.4.6, that reader parses a file cut short inside its header as if the missing
 * bytes were zeros, returning empty tensor names without an error, where a truncated file must fail naming the key
 * or tensor it ends in.
 *
 * ```text
 * "GGUF" u32:version  u64:tensor_count  u64:kv_count
 * kv_count × (string key, u32 value_type, value)            string = u64 length + UTF-8; arrays: u32 type, u64 n
 * tensor_count × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
 * padding to general.alignment (default 32), then the tensors' data at their offsets
 * ```
 */
export async function readGgufHeader(file: string): Promise<GgufHeader> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new GgufError('gguf_file_unreadable', file, 'cannot be opened', { cause: error });
  }
  try {
    const { size } = await handle.stat();
    let length = Math.min(size, 1 << 20);
    for (;;) {
      const bytes = new Uint8Array(length);
      await handle.read(bytes, 0, length, 0);
      try {
        return parseHeader(file, bytes, size);
      } catch (error) {
        if (!(error instanceof NeedMoreBytes)) throw error;
        if (length >= size) throw new GgufError('gguf_file_truncated', file, `ends (at byte ${size}) inside ${error.message}`, keyOrTensor(error.message));
        length = Math.min(size, length * 4);
      }
    }
  } finally {
    await handle.close();
  }
}

function parseHeader(file: string, bytes: Uint8Array, fileSize: number): GgufHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder('utf-8', { fatal: false });
  let offset = 0;
  let where = 'the file header';
  const need = (count: number): void => {
    if (offset + count > bytes.length) throw new NeedMoreBytes(where);
  };
  const u32 = (): number => {
    need(4);
    const value = view.getUint32(offset, true);
    offset += 4;
    return value;
  };
  const u64 = (): bigint => {
    need(8);
    const value = view.getBigUint64(offset, true);
    offset += 8;
    return value;
  };
  const size = (what: string): number => {
    need(8);
    // Two u32 halves, not a BigInt: this runs for every string of a vocabulary.
    const value = view.getUint32(offset + 4, true) * 2 ** 32 + view.getUint32(offset, true);
    if (value > fileSize) {
      const exact = view.getBigUint64(offset, true);
      throw new GgufError('gguf_file_invalid', file, `declares ${what} of ${exact}, more than the file's ${fileSize} bytes`, keyOrTensor(where));
    }
    offset += 8;
    return value;
  };
  const string = (): string => {
    const length = size('a string length');
    need(length);
    const text = decoder.decode(bytes.subarray(offset, offset + length));
    offset += length;
    return text;
  };
  // Steps over `count` elements of `type` without decoding them: a Qwen vocabulary's tokens and merges (300k
  // strings, ~7 MB) took ~200 ms to decode and drop on every read of the header.
  const skipArray = (type: number, count: number, key: string, depth: number): void => {
    const width = scalarWidths[type];
    if (width !== undefined) {
      need(width * count);
      offset += width * count;
      return;
    }
    for (let index = 0; index < count; index += 1) {
      if (type === 8) {
        const length = size('a string length');
        need(length);
        offset += length;
      } else {
        value(type, key, depth + 1);
      }
    }
  };
  const value = (type: number, key: string, depth = 0): GgufMetadataValue => {
    switch (type) {
      case 0: need(1); return view.getUint8(offset++);
      case 1: need(1); return view.getInt8(offset++);
      case 2: need(2); offset += 2; return view.getUint16(offset - 2, true);
      case 3: need(2); offset += 2; return view.getInt16(offset - 2, true);
      case 4: return u32();
      case 5: need(4); offset += 4; return view.getInt32(offset - 4, true);
      case 6: need(4); offset += 4; return shortestFloat32(view.getFloat32(offset - 4, true));
      case 7: need(1); return view.getUint8(offset++) !== 0;
      case 8: return string();
      case 9: {
        const elementType = u32();
        const count = size('an array length');
        if (depth > 2) throw new GgufError('gguf_file_invalid', file, 'nests arrays deeper than 3 levels', { key });
        // The vocabulary's arrays (100k+ strings) are stepped over, not kept: the tokenizer comes from its folder.
        if (count > maxKeptArrayLength) {
          skipArray(elementType, count, key, depth);
          return [];
        }
        const values: GgufMetadataValue[] = [];
        for (let index = 0; index < count; index += 1) values.push(value(elementType, key, depth + 1));
        return values;
      }
      case 10: return u64();
      case 11: need(8); offset += 8; return view.getBigInt64(offset - 8, true);
      case 12: need(8); offset += 8; return view.getFloat64(offset - 8, true);
      default:
        throw new GgufError('gguf_file_invalid', file, `has a value of unknown type ${type}`, { key });
    }
  };

  if (fileSize < 4 || (bytes.length >= 4 && view.getUint32(0, true) !== ggufMagic)) {
    if (fileSize < 4) throw new GgufError('gguf_file_truncated', file, `is ${fileSize} bytes, shorter than the GGUF magic`);
    throw new GgufError('gguf_file_invalid', file, 'does not start with the GGUF magic ("GGUF")');
  }
  offset = 4;
  const version = u32();
  if (version !== 2 && version !== 3) throw new GgufError('gguf_file_invalid', file, `is GGUF version ${version}; versions 2 and 3 are read`);
  where = 'the tensor count';
  const tensorCount = size('a tensor count');
  where = 'the metadata count';
  const keyCount = size('a metadata count');
  const metadata = new Map<string, GgufMetadataValue>();
  for (let index = 0; index < keyCount; index += 1) {
    where = `metadata entry ${index}`;
    const key = string();
    where = `the value of key ${key}`;
    metadata.set(key, value(u32(), key));
  }
  const infos: { name: string; dimensions: number[]; type: number; relativeOffset: number }[] = [];
  for (let index = 0; index < tensorCount; index += 1) {
    where = `tensor info ${index}`;
    const name = string();
    where = `the info of tensor ${name}`;
    const dimensionCount = u32();
    if (dimensionCount > 4) throw new GgufError('gguf_file_invalid', file, `has ${dimensionCount} dimensions; at most 4`, { tensor: name });
    const dimensions = Array.from({ length: dimensionCount }, () => size('a dimension'));
    const type = u32();
    const relativeOffset = size('a data offset');
    infos.push({ name, dimensions, type, relativeOffset });
  }
  const alignmentValue = metadata.get('general.alignment') ?? 32;
  const alignment = Number(alignmentValue);
  if (!Number.isInteger(alignment) || alignment < 1) {
    throw new GgufError('gguf_metadata_invalid', file, `must be a positive integer, got ${String(alignmentValue)}`, { key: 'general.alignment' });
  }
  const dataStart = Math.ceil(offset / alignment) * alignment;
  const tensors = new Map<string, GgufTensorInfo>();
  for (const info of infos) {
    const type = ggmlTypeName(info.type);
    const elements = info.dimensions.reduce((product, dim) => product * dim, 1);
    let byteLength = 0;
    if (type !== undefined) {
      const columns = info.dimensions[0] ?? 1;
      if (columns % ggmlBlockLayout[type].elements !== 0) {
        throw new GgufError('gguf_tensor_shape', file, `has rows of ${columns} elements, not whole ${type} blocks of ${ggmlBlockLayout[type].elements}`, {
          tensor: info.name,
        });
      }
      byteLength = (elements / ggmlBlockLayout[type].elements) * ggmlBlockLayout[type].bytes;
    }
    if (info.relativeOffset % alignment !== 0) {
      throw new GgufError('gguf_file_invalid', file, `starts at data offset ${info.relativeOffset}, not a multiple of the alignment ${alignment}`, {
        tensor: info.name,
      });
    }
    const start = dataStart + info.relativeOffset;
    if (start + byteLength > fileSize) {
      throw new GgufError('gguf_file_truncated', file, `ends at byte ${fileSize} but the tensor's data runs to byte ${start + byteLength}`, {
        tensor: info.name,
      });
    }
    tensors.set(info.name, { name: info.name, dimensions: info.dimensions, type: info.type, offset: start, byteLength });
  }
  return { file, version, metadata, tensors };
}

/**
 * A float32 as the shortest decimal that rounds back to it: GGUF stores `rms_norm_eps` 1e-5 as the float32
 * 9.99999974e-6, which the config then shows as the checkpoint wrote it.
 */
function shortestFloat32(value: number): number {
  for (let digits = 1; digits < 9; digits += 1) {
    const decimal = Number(value.toPrecision(digits));
    if (Math.fround(decimal) === value) return decimal;
  }
  return value;
}

function keyOrTensor(where: string): { key?: string; tensor?: string } {
  const key = /^the value of key (.+)$/.exec(where)?.[1];
  if (key !== undefined) return { key };
  const tensor = /^the info of tensor (.+)$/.exec(where)?.[1];
  return tensor === undefined ? {} : { tensor };
}

/** GGUF architectures Pagoda runs, and the Hugging Face architecture each is. */
const ggufArchitectures = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' } as const;

/**
 * The config.json Hugging Face would write for the model a GGUF's metadata describes, for `parseModelConfig` to
 * validate as any other (loadModelConfig does, naming the GGUF key of a bad field): `{arch}.block_count`, `.embedding_length`, `.feed_forward_length`,
 * `.attention.head_count(_kv)`, `.attention.key_length`, `.context_length`, `.rope.freq_base`,
 * `.rope.scaling.*`, `.attention.layer_norm_rms_epsilon`; the vocabulary from `token_embd.weight`; tied embeddings
 * when there is no `output.weight`; `tokenizer.ggml.bos_token_id` / `eos_token_id`.
 */
export function ggufConfigJson(header: GgufHeader): Record<string, unknown> {
  const { file, metadata, tensors } = header;
  const architecture = metadata.get('general.architecture');
  if (typeof architecture !== 'string' || !(architecture in ggufArchitectures)) {
    throw new GgufError(
      'gguf_architecture_unsupported',
      file,
      `is ${JSON.stringify(architecture ?? null)}; Pagoda runs ${Object.keys(ggufArchitectures).join(', ')}`,
      { key: 'general.architecture' },
    );
  }
  const arch = architecture as keyof typeof ggufArchitectures;
  const number = (key: string, required: boolean): number | undefined => {
    const raw = metadata.get(`${arch}.${key}`);
    if (raw === undefined) {
      if (required) throw new GgufError('gguf_metadata_invalid', file, 'is missing', { key: `${arch}.${key}` });
      return undefined;
    }
    if (typeof raw !== 'number' && typeof raw !== 'bigint') {
      throw new GgufError('gguf_metadata_invalid', file, `must be a number, got ${JSON.stringify(raw)}`, { key: `${arch}.${key}` });
    }
    return Number(raw);
  };
  const embedding = tensors.get('token_embd.weight');
  if (embedding === undefined) throw new GgufError('gguf_tensor_missing', file, 'is missing', { tensor: 'token_embd.weight' });
  const headCount = number('attention.head_count', true);
  const raw: Record<string, unknown> = {
    architectures: [ggufArchitectures[arch]],
    model_type: arch,
    vocab_size: embedding.dimensions[1],
    hidden_size: number('embedding_length', true),
    intermediate_size: number('feed_forward_length', true),
    num_hidden_layers: number('block_count', true),
    num_attention_heads: headCount,
    num_key_value_heads: number('attention.head_count_kv', false) ?? headCount,
    head_dim: number('attention.key_length', false),
    max_position_embeddings: number('context_length', false),
    rms_norm_eps: number('attention.layer_norm_rms_epsilon', false),
    rope_theta: number('rope.freq_base', false),
    tie_word_embeddings: !tensors.has('output.weight'),
    attention_bias: arch !== 'llama' ? undefined : tensors.has('blk.0.attn_q.bias'),
    bos_token_id: optionalNumber(metadata.get('tokenizer.ggml.bos_token_id')),
    eos_token_id: optionalNumber(metadata.get('tokenizer.ggml.eos_token_id')),
  };
  const scaling = metadata.get(`${arch}.rope.scaling.type`);
  if (typeof scaling === 'string' && scaling !== 'none') {
    raw.rope_scaling = {
      rope_type: scaling,
      factor: number('rope.scaling.factor', true),
      ...(number('rope.scaling.original_context_length', false) === undefined
        ? {}
        : { original_max_position_embeddings: number('rope.scaling.original_context_length', false) }),
    };
  }
  if (tensors.has('rope_freqs.weight')) {
    // llama.cpp stores Llama 3's rope scaling as per-frequency factors, which the transformers formulas do not take.
    throw new GgufError('gguf_tensor_type_unsupported', file, "holds Llama 3's rope scaling as frequency factors, which Pagoda does not read; run the Hugging Face checkpoint", {
      tensor: 'rope_freqs.weight',
    });
  }
  return Object.fromEntries(Object.entries(raw).filter(([, entry]) => entry !== undefined));
}

/** The GGUF key a config.json field comes from, to name it in errors. */
export function ggufKeyOf(architecture: string, field: string | undefined): string {
  const keys: Record<string, string> = {
    hidden_size: 'embedding_length',
    intermediate_size: 'feed_forward_length',
    num_hidden_layers: 'block_count',
    num_attention_heads: 'attention.head_count',
    num_key_value_heads: 'attention.head_count_kv',
    head_dim: 'attention.key_length',
    rms_norm_eps: 'attention.layer_norm_rms_epsilon',
    max_position_embeddings: 'context_length',
  };
  const key = keys[field ?? ''];
  return key === undefined ? (field === 'architectures' ? 'general.architecture' : `${architecture}.${field ?? 'metadata'}`) : `${architecture}.${key}`;
}

function optionalNumber(value: GgufMetadataValue | undefined): number | undefined {
  return typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : undefined;
}

/** The GGUF name of a Hugging Face weight name (llama.cpp's tensor names). */
export function ggufTensorName(name: string): string {
  const fixed: Record<string, string> = {
    'model.embed_tokens.weight': 'token_embd.weight',
    'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
  };
  if (fixed[name] !== undefined) return fixed[name];
  const match = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (match === null) throw new RangeError(`no GGUF name for ${name}`);
  const parts: Record<string, string> = {
    'input_layernorm.weight': 'attn_norm.weight',
    'post_attention_layernorm.weight': 'ffn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight',
    'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight',
    'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.q_proj.bias': 'attn_q.bias',
    'self_attn.k_proj.bias': 'attn_k.bias',
    'self_attn.v_proj.bias': 'attn_v.bias',
    'self_attn.o_proj.bias': 'attn_output.bias',
    'self_attn.q_norm.weight': 'attn_q_norm.weight',
    'self_attn.k_norm.weight': 'attn_k_norm.weight',
    'mlp.gate_proj.weight': 'ffn_gate.weight',
    'mlp.up_proj.weight': 'ffn_up.weight',
    'mlp.down_proj.weight': 'ffn_down.weight',
  };
  const part = parts[match[2]!];
  if (part === undefined) throw new RangeError(`no GGUF name for ${name}`);
  return `blk.${match[1]}.${part}`;
}

/** A GGUF weight loaded differently from how it is stored, for the start-up log. */
export interface GgufConversion {
  readonly tensor: string;
  readonly stored: string;
  readonly loaded: WeightFormat;
}

/** The weights of a GGUF model, and which were re-quantized. */
export interface GgufWeights {
  readonly weights: ModelWeights;
  readonly conversions: readonly GgufConversion[];
}

/**
 * The weights a GGUF file holds, under their Hugging Face names, each checked now against the shape the config
 * implies and read from the file when the weight is read. F32, F16 and BF16 tensors load as float32, Q8_0 and Q4_0
 * as the same blocks (ggmlBlocksToQuantized), K-quants dequantized and re-quantized (loadedFormatOf). The `llama`
 * architecture's q/k rows are un-permuted from llama.cpp's interleaved RoPE layout back to Hugging Face's halves.
 */
export function ggufWeights(header: GgufHeader, config: ModelConfig, options: { onProgress?: (loadedBytes: number, totalBytes: number) => void } = {}): GgufWeights {
  const { file, tensors } = header;
  const weights = new Map<string, WeightTensor>();
  const conversions: GgufConversion[] = [];
  const wanted = expectedWeights(config);
  const totalBytes = wanted.reduce((sum, { name }) => sum + (tensors.get(ggufTensorName(name))?.byteLength ?? 0), 0);
  let loadedBytes = 0;
  for (const { name, shape } of wanted) {
    const ggufName = ggufTensorName(name);
    const info = tensors.get(ggufName);
    if (info === undefined) throw new GgufError('gguf_tensor_missing', file, `is missing (Hugging Face ${name})`, { tensor: ggufName });
    const type = ggmlTypeName(info.type);
    if (type === undefined) {
      throw new GgufError(
        'gguf_tensor_type_unsupported',
        file,
        `is ${describeGgmlType(info.type)}; Pagoda reads F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K`,
        { tensor: ggufName },
      );
    }
    const stored = [...info.dimensions].reverse();
    if (stored.length !== shape.length || stored.some((dim, axis) => dim !== shape[axis])) {
      throw new GgufError('gguf_tensor_shape', file, `has shape [${stored.join(', ')}] where the metadata implies [${shape.join(', ')}]`, {
        tensor: ggufName,
        expectedShape: shape,
        actualShape: stored,
      });
    }
    const heads = config.family !== 'llama' ? undefined : name.includes('.q_proj.') ? config.numHeads : name.includes('.k_proj.') ? config.numKvHeads : undefined;
    const reading = {
      file,
      info,
      type,
      shape,
      heads,
      onRead: (bytes: number) => {
        loadedBytes = Math.min(totalBytes, loadedBytes + bytes);
        options.onProgress?.(loadedBytes, totalBytes);
      },
    };
    const tensor = ggufTensor(reading);
    if (isRequantized(type)) conversions.push({ tensor: ggufName, stored: type, loaded: tensor.format });
    weights.set(name, tensor);
  }
  return { weights, conversions };
}

interface TensorReading {
  readonly file: string;
  readonly info: GgufTensorInfo;
  readonly type: GgmlTypeName;
  readonly shape: readonly number[];
  /** Heads of a `llama` q or k projection, whose rows llama.cpp permuted. */
  readonly heads: number | undefined;
  readonly onRead: (bytes: number) => void;
}

function ggufTensor(reading: TensorReading): WeightTensor {
  const { type, shape, heads } = reading;
  const rows = shape.length === 1 ? 1 : shape[0]!;
  const columns = shape.length === 1 ? shape[0]! : shape[1]!;
  const format = loadedFormatOf[type];
  const readRows = async (range: RowRange | undefined): Promise<Uint8Array> => {
    // llama.cpp's permutation moves whole rows, but not in ranges: read them all and un-permute, then take the range.
    const span = heads === undefined && range !== undefined ? range : { start: 0, end: rows };
    const bytes = await readBytes(reading, span.start * ggmlRowBytes(type, columns), (span.end - span.start) * ggmlRowBytes(type, columns));
    if (heads === undefined) return bytes;
    const unpermuted = unpermuteRows(bytes, rows, ggmlRowBytes(type, columns), heads);
    return range === undefined ? unpermuted : unpermuted.subarray(range.start * ggmlRowBytes(type, columns), range.end * ggmlRowBytes(type, columns));
  };
  const count = (range: RowRange | undefined): number => (range === undefined ? rows : range.end - range.start);
  if (format === 'float32') {
    return {
      format,
      shape,
      read: async (range) => ggmlFloatValues(type as 'F32' | 'F16' | 'BF16', await readRows(range), count(range) * columns),
    };
  }
  return {
    format,
    shape: [rows, columns],
    read: async (range): Promise<QuantizedBlocks> => {
      const bytes = await readRows(range);
      if (isDirectQuantized(type)) return ggmlBlocksToQuantized(type, bytes, count(range), columns);
      const values = ggmlKQuantValues(type as 'Q4_K' | 'Q5_K' | 'Q6_K', bytes, count(range) * columns);
      return quantizeRows(values, count(range), columns, format);
    },
  };
}

/**
 * For each row of a `llama` q or k projection in Hugging Face's rotate-half layout, its row in llama.cpp's
 * interleaved one, which llama.cpp's converter makes (`reshape(heads, 2, d/2, hidden).swapaxes(1, 2)`):
 *
 * ```text
 * Hugging Face row of head h:  h·d + t·(d/2) + j      (t = 0 first half, 1 second half; j < d/2)
 * llama.cpp row of head h:     h·d + 2j + t
 * ```
 */
export function llamaCppRowOrder(rows: number, heads: number): Int32Array {
  const headDim = rows / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new RangeError(`cannot split ${rows} rows into ${heads} heads of even size`);
  const half = headDim / 2;
  const order = new Int32Array(rows);
  for (let head = 0; head < heads; head += 1) {
    for (let part = 0; part < 2; part += 1) {
      for (let pair = 0; pair < half; pair += 1) order[head * headDim + part * half + pair] = head * headDim + 2 * pair + part;
    }
  }
  return order;
}

/** Rows from llama.cpp's interleaved q/k layout back to Hugging Face's (see llamaCppRowOrder). */
function unpermuteRows(bytes: Uint8Array, rows: number, rowBytes: number, heads: number): Uint8Array {
  const order = llamaCppRowOrder(rows, heads);
  const out = new Uint8Array(bytes.length);
  for (let row = 0; row < rows; row += 1) out.set(bytes.subarray(order[row]! * rowBytes, (order[row]! + 1) * rowBytes), row * rowBytes);
  return out;
}

async function readBytes(reading: TensorReading, start: number, length: number): Promise<Uint8Array> {
  const handle = await open(reading.file, 'r').catch((error: unknown) => {
    throw new GgufError('gguf_file_unreadable', reading.file, 'cannot be opened', { cause: error });
  });
  try {
    const bytes = new Uint8Array(length);
    let read = 0;
    while (read < length) {
      const { bytesRead } = await handle.read(bytes, read, length - read, reading.info.offset + start + read);
      if (bytesRead === 0) throw new GgufError('gguf_file_truncated', reading.file, 'ended while its data was being read', { tensor: reading.info.name });
      read += bytesRead;
    }
    reading.onRead(length);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** Whether `path` names a GGUF file (by its extension, as vLLM decides). */
export function isGgufPath(path: string): boolean {
  return path.toLowerCase().endsWith('.gguf');
}

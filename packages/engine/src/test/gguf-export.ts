import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fitsBlocks, type GgmlTypeName } from '../model/ggml-blocks';
import { ggufTensorName, llamaCppRowOrder } from '../model/gguf';
import type { ModelConfig } from '../model/model-config';
import { expectedWeights } from '../model/model-weights';
import type { ModelWeights } from '../model/weight-tensor';
import { encodeGgmlRows } from './ggml-encoders';
import { type GgufTensor, type GgufValue, writeGguf } from './gguf-writer';

/** llama.cpp's token types (`llama_token_type`). */
const tokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** llama.cpp's `general.file_type` (`llama_ftype`) of each type a whole model is exported at. */
const fileTypes: Readonly<Record<GgmlTypeName, number>> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, Q4_K: 15, Q5_K: 17, Q6_K: 18, BF16: 32 };

/** How {@link exportGguf} writes a model. */
export interface GgufExportOptions {
  /** The type of the projections (q/k/v/o_proj, gate/up/down_proj). */
  readonly type: GgmlTypeName;
  /**
   * The type of the embedding and the output head. Default: Q8_0 when `type` is Q4_0 (what Pagoda's `int4` holds,
   * so the file's values equal Pagoda's), otherwise `type`.
   */
  readonly embeddingType?: GgmlTypeName;
  /**
   * A Hugging Face folder whose tokenizer.json becomes the file's vocabulary, which llama.cpp needs (Pagoda takes the
   * tokenizer from a folder and ignores it): a SentencePiece vocabulary for `llama`, a byte-level BPE one for Qwen.
   */
  readonly tokenizer?: string;
  /**
   * Write `output.weight` for a tied model too. Default: for the `llama` architecture, whose loader in node-llama-cpp
   * 3.21.1's llama.cpp needs it; a GGUF with it loads in Pagoda as an untied model.
   */
  readonly writeTiedOutput?: boolean;
  readonly name?: string;
}

/** What was written: each tensor's GGUF name and type. */
export interface GgufExport {
  readonly types: ReadonlyMap<string, GgmlTypeName>;
}

/**
 * Writes a model as a GGUF file that llama.cpp and Pagoda load: llama.cpp's tensor names and metadata keys for the
 * `llama`, `qwen2` and `qwen3` architectures, q/k rows of `llama` permuted to llama.cpp's interleaved RoPE layout,
 * norms and biases as F32, and a tensor whose rows are not whole blocks of its type at F32 instead (where
 * llama.cpp's converter would fall back to F16: F32 keeps the values Pagoda's own quantizer leaves unquantized).
 * Each tensor is read, encoded and written in turn.
 */
export async function exportGguf(config: ModelConfig, weights: ModelWeights, file: string, options: GgufExportOptions): Promise<GgufExport> {
  const architecture = config.family;
  if (config.slidingWindow !== undefined || (config.ropeScaling !== undefined && config.ropeScaling.rope_type !== 'linear' && config.ropeScaling.rope_type !== 'yarn')) {
    throw new Error(`the GGUF exporter writes no sliding window or ${String(config.ropeScaling?.rope_type)} rope scaling`);
  }
  const embeddingType = options.embeddingType ?? (options.type === 'Q4_0' ? 'Q8_0' : options.type);
  const writeTiedOutput = options.writeTiedOutput ?? architecture === 'llama';
  const types = new Map<string, GgmlTypeName>();
  const tensors: GgufTensor[] = [];
  const add = (hfName: string, shape: readonly number[], as = ggufTensorName(hfName)): void => {
    const tensor = weights.get(hfName);
    if (tensor === undefined) throw new Error(`the model has no ${hfName}`);
    if (tensor.format !== 'float32') throw new Error(`${hfName} is ${tensor.format}; the exporter encodes float weights`);
    const projection = /_proj\.weight$/.test(hfName);
    const embedding = hfName === 'model.embed_tokens.weight' || hfName === 'lm_head.weight';
    const wanted: GgmlTypeName = projection ? options.type : embedding ? embeddingType : 'F32';
    const columns = shape[shape.length - 1]!;
    const type = shape.length === 2 && fitsBlocks(wanted, columns) ? wanted : 'F32';
    const heads = architecture !== 'llama' ? undefined : hfName.includes('.q_proj.') ? config.numHeads : hfName.includes('.k_proj.') ? config.numKvHeads : undefined;
    types.set(as, type);
    tensors.push({
      name: as,
      shape,
      type,
      data: async () => {
        let values = await tensor.read();
        if (heads !== undefined) values = permuteRows(values, shape[0]!, columns, heads);
        return encodeGgmlRows(type, values, shape.length === 1 ? 1 : shape[0]!, columns);
      },
    });
  };
  for (const { name, shape } of expectedWeights(config)) add(name, shape);
  if (config.tieWordEmbeddings && writeTiedOutput) add('model.embed_tokens.weight', [config.vocabSize, config.hiddenSize], 'output.weight');

  const u32 = (value: number): GgufValue => ({ type: 'uint32', value });
  const float = (value: number): GgufValue => ({ type: 'float32', value });
  const metadata = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: architecture }],
    ['general.name', { type: 'string', value: options.name ?? 'pagoda-export' }],
    ['general.file_type', u32(fileTypes[options.type])],
    ['general.quantization_version', u32(2)],
    [`${architecture}.vocab_size`, u32(config.vocabSize)],
    [`${architecture}.context_length`, u32(config.maxPositionEmbeddings)],
    [`${architecture}.embedding_length`, u32(config.hiddenSize)],
    [`${architecture}.block_count`, u32(config.numLayers)],
    [`${architecture}.feed_forward_length`, u32(config.intermediateSize)],
    [`${architecture}.attention.head_count`, u32(config.numHeads)],
    [`${architecture}.attention.head_count_kv`, u32(config.numKvHeads)],
    [`${architecture}.attention.key_length`, u32(config.headDim)],
    [`${architecture}.attention.value_length`, u32(config.headDim)],
    [`${architecture}.rope.dimension_count`, u32(config.headDim)],
    [`${architecture}.rope.freq_base`, float(config.ropeTheta)],
    [`${architecture}.attention.layer_norm_rms_epsilon`, float(config.rmsNormEps)],
  ]);
  const scaling = config.ropeScaling;
  if (scaling !== undefined) {
    metadata.set(`${architecture}.rope.scaling.type`, { type: 'string', value: String(scaling.rope_type) });
    metadata.set(`${architecture}.rope.scaling.factor`, float(Number(scaling.factor)));
    if (typeof scaling.original_max_position_embeddings === 'number') {
      metadata.set(`${architecture}.rope.scaling.original_context_length`, u32(scaling.original_max_position_embeddings));
    }
  }
  if (config.bosTokenId !== undefined) metadata.set('tokenizer.ggml.bos_token_id', u32(config.bosTokenId));
  if (config.eosTokenIds[0] !== undefined) metadata.set('tokenizer.ggml.eos_token_id', u32(config.eosTokenIds[0]));
  if (options.tokenizer !== undefined) {
    const tokenizer = JSON.parse(await readFile(join(options.tokenizer, 'tokenizer.json'), 'utf8')) as TokenizerJson;
    for (const [key, value] of vocabularyMetadata(tokenizer, config)) metadata.set(key, value);
  }
  await writeGguf(file, metadata, tensors);
  return { types };
}

/** Rows of a `llama` q/k projection in llama.cpp's interleaved order (see llamaCppRowOrder). */
export function permuteRows(values: Float32Array, rows: number, columns: number, heads: number): Float32Array {
  const order = llamaCppRowOrder(rows, heads);
  const out = new Float32Array(values.length);
  for (let row = 0; row < rows; row += 1) out.set(values.subarray(row * columns, (row + 1) * columns), order[row]! * columns);
  return out;
}

/** The parts of tokenizer.json the vocabulary is made of. */
export interface TokenizerJson {
  model: { type: string; vocab: Record<string, number>; merges?: Array<string | [string, string]>; unk_token?: string | null };
  added_tokens?: Array<{ id: number; content: string; special: boolean }>;
}

/**
 * The tokenizer as llama.cpp's vocabulary metadata: `llama` (SentencePiece) for the Llama family, `gpt2` (byte-level
 * BPE with its merges, Qwen2's pre-tokenizer) for Qwen.
 */
export function vocabularyMetadata(tokenizer: TokenizerJson, config: ModelConfig): Map<string, GgufValue> {
  const vocabulary = llamaCppVocabulary(tokenizer, config.vocabSize, config.family === 'llama');
  const metadata = new Map<string, GgufValue>([
    ['tokenizer.ggml.model', { type: 'string', value: config.family === 'llama' ? 'llama' : 'gpt2' }],
    ['tokenizer.ggml.tokens', { type: 'array', elementType: 'string', values: vocabulary.tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', elementType: 'int32', values: vocabulary.types }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: config.family === 'llama' && config.bosTokenId !== undefined }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ]);
  if (config.family === 'llama') {
    metadata.set('tokenizer.ggml.scores', { type: 'array', elementType: 'float32', values: vocabulary.scores });
    const unknown = vocabulary.types.indexOf(tokenType.unknown);
    if (unknown !== -1) metadata.set('tokenizer.ggml.unknown_token_id', { type: 'uint32', value: unknown });
  } else {
    const merges = (tokenizer.model.merges ?? []).map((merge) => (Array.isArray(merge) ? merge.join(' ') : merge));
    metadata.set('tokenizer.ggml.pre', { type: 'string', value: 'qwen2' });
    metadata.set('tokenizer.ggml.merges', { type: 'array', elementType: 'string', values: merges });
  }
  return metadata;
}

/**
 * The tokenizer's tokens padded with unused ones to the model's vocabulary size (the embedding's rows), with
 * llama.cpp's token types. Scores are −id: llama.cpp merges a SentencePiece vocabulary by score, and in a
 * SentencePiece-style BPE vocabulary a lower id is an earlier merge; the benchmarks feed token ids, so tokenization is
 * not measured. A SentencePiece vocabulary needs the 256 byte tokens `<0x00>`..`<0xFF>` (llama.cpp aborts without).
 */
export function llamaCppVocabulary(tokenizer: TokenizerJson, vocabSize: number, sentencePiece = true): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = new Array<string | undefined>(vocabSize);
  for (const [token, id] of Object.entries(tokenizer.model.vocab)) if (id < vocabSize) tokens[id] = token;
  const special = new Set<number>();
  for (const added of tokenizer.added_tokens ?? []) {
    if (added.id < vocabSize) tokens[added.id] = added.content;
    if (added.special) special.add(added.id);
  }
  const unknownToken = tokenizer.model.unk_token ?? undefined;
  const types: number[] = [];
  const scores: number[] = [];
  const filled: string[] = [];
  for (let id = 0; id < vocabSize; id++) {
    const token = tokens[id];
    scores.push(-id);
    if (token === undefined) {
      filled.push(`<unused_${id}>`);
      types.push(tokenType.unused);
    } else {
      filled.push(token);
      types.push(
        token === unknownToken
          ? tokenType.unknown
          : special.has(id)
            ? tokenType.control
            : sentencePiece && /^<0x[0-9A-F]{2}>$/.test(token)
              ? tokenType.byte
              : tokenType.normal,
      );
    }
  }
  const byteTokens = types.filter((type) => type === tokenType.byte).length;
  if (sentencePiece && byteTokens !== 256) {
    throw new Error(`llama.cpp's SentencePiece vocabulary needs the 256 byte tokens <0x00>..<0xFF>; this tokenizer has ${byteTokens}`);
  }
  return { tokens: filled, scores, types };
}

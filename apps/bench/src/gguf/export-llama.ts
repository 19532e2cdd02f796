import { dummyWeights, loadCheckpointWeights, loadModelConfig, type ModelConfig, type ModelWeights } from '@pagoda/engine';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type GgufTensor, type GgufValue, writeGguf } from './gguf-writer';

/** llama.cpp's token types (`llama_token_type`). */
const tokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/**
 * Reorders q_proj or k_proj rows from Hugging Face's rotate-half RoPE layout to llama.cpp's interleaved one: per
 * head, the rows `[0 .. d/2)` and `[d/2 .. d)` (the two halves of each rotated pair) are interleaved.
 *
 * ```
 * HF row of head h:        h·d + t·(d/2) + j      (t = 0 first half, 1 second half; j < d/2)
 * llama.cpp row of head h: h·d + 2j + t
 * ```
 * This is `reshape(heads, 2, d/2, hidden).swapaxes(1, 2)` of llama.cpp's converter.
 */
export function permuteForLlamaCppRope(data: Float32Array, rows: number, columns: number, heads: number): Float32Array {
  const headDim = rows / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`cannot split ${rows} rows into ${heads} heads of even size`);
  const half = headDim / 2;
  const out = new Float32Array(data.length);
  for (let head = 0; head < heads; head++) {
    for (let half_index = 0; half_index < 2; half_index++) {
      for (let j = 0; j < half; j++) {
        const from = (head * headDim + half_index * half + j) * columns;
        const to = (head * headDim + 2 * j + half_index) * columns;
        out.set(data.subarray(from, from + columns), to);
      }
    }
  }
  return out;
}

interface TokenizerJson {
  model: { type: string; vocab: Record<string, number>; unk_token?: string | null };
  added_tokens?: Array<{ id: number; content: string; special: boolean }>;
}

/**
 * The tokenizer as llama.cpp's `llama` (SentencePiece) vocabulary, padded with unused tokens to the model's
 * vocabulary size (the embedding's rows). Scores are −id: llama.cpp merges by score, and in a SentencePiece-style
 * BPE vocabulary a lower id is an earlier merge; the benchmarks feed token ids, so tokenization is not measured.
 */
export function llamaCppVocabulary(tokenizer: TokenizerJson, vocabSize: number): { tokens: string[]; scores: number[]; types: number[] } {
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
      types.push(token === unknownToken ? tokenType.unknown : special.has(id) ? tokenType.control : /^<0x[0-9A-F]{2}>$/.test(token) ? tokenType.byte : tokenType.normal);
    }
  }
  const byteTokens = types.filter((type) => type === tokenType.byte).length;
  if (byteTokens !== 256) {
    throw new Error(`llama.cpp's SentencePiece vocabulary needs the 256 byte tokens <0x00>..<0xFF>; this tokenizer has ${byteTokens}`);
  }
  return { tokens: filled, scores, types };
}

/** The GGUF tensors of a Llama checkpoint, in llama.cpp's names, with q/k rows permuted and `output.weight` always written. */
export async function llamaCppTensors(config: ModelConfig, lazyWeights: ModelWeights): Promise<GgufTensor[]> {
  const values = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [name, tensor] of lazyWeights) {
    if (tensor.format !== 'float32') throw new Error(`${name} is ${tensor.format}; the F32 exporter takes float weights`);
    values.set(name, { shape: tensor.shape, data: await tensor.read() });
  }
  const get = (name: string) => {
    const tensor = values.get(name);
    if (tensor === undefined) throw new Error(`the checkpoint has no ${name}`);
    return tensor;
  };
  const plain = (ggufName: string, hfName: string): GgufTensor => ({ name: ggufName, shape: get(hfName).shape, data: get(hfName).data });
  const permuted = (ggufName: string, hfName: string, heads: number): GgufTensor => {
    const { shape, data } = get(hfName);
    return { name: ggufName, shape, data: permuteForLlamaCppRope(data, shape[0]!, shape[1]!, heads) };
  };
  const tensors: GgufTensor[] = [plain('token_embd.weight', 'model.embed_tokens.weight')];
  for (let layer = 0; layer < config.numLayers; layer++) {
    const hf = `model.layers.${layer}`;
    const block = `blk.${layer}`;
    tensors.push(
      plain(`${block}.attn_norm.weight`, `${hf}.input_layernorm.weight`),
      permuted(`${block}.attn_q.weight`, `${hf}.self_attn.q_proj.weight`, config.numHeads),
      permuted(`${block}.attn_k.weight`, `${hf}.self_attn.k_proj.weight`, config.numKvHeads),
      plain(`${block}.attn_v.weight`, `${hf}.self_attn.v_proj.weight`),
      plain(`${block}.attn_output.weight`, `${hf}.self_attn.o_proj.weight`),
      plain(`${block}.ffn_norm.weight`, `${hf}.post_attention_layernorm.weight`),
      plain(`${block}.ffn_gate.weight`, `${hf}.mlp.gate_proj.weight`),
      plain(`${block}.ffn_up.weight`, `${hf}.mlp.up_proj.weight`),
      plain(`${block}.ffn_down.weight`, `${hf}.mlp.down_proj.weight`),
    );
  }
  tensors.push(plain('output_norm.weight', 'model.norm.weight'));
  // A tied model still needs output.weight: llama.cpp's loader does not fall back to the embedding for every build.
  tensors.push(config.tieWordEmbeddings ? { ...plain('token_embd.weight', 'model.embed_tokens.weight'), name: 'output.weight' } : plain('output.weight', 'lm_head.weight'));
  return tensors;
}

export interface ExportOptions {
  /** `checkpoint` reads the folder's safetensors; `dummy` makes the engine's seeded dummy weights. */
  readonly weights: 'checkpoint' | 'dummy';
  /** The dummy weights' seed (the engine's `seed` option; default 0). */
  readonly seed?: number;
  readonly name?: string;
}

/** Writes a Llama checkpoint folder (config.json, tokenizer.json, weights) as an F32 GGUF for llama.cpp. */
export async function exportLlamaGguf(modelDir: string, file: string, options: ExportOptions): Promise<{ config: ModelConfig; tensorCount: number }> {
  const config = await loadModelConfig(modelDir);
  if (config.family !== 'llama' || config.attentionBias || config.qkNorm || config.ropeScaling !== undefined || config.slidingWindow !== undefined) {
    throw new Error(`the GGUF exporter writes plain Llama models (no attention bias, q/k norm, rope scaling or sliding window); ${modelDir} is ${config.architecture}`);
  }
  const tokenizer = JSON.parse(await readFile(join(modelDir, 'tokenizer.json'), 'utf8')) as TokenizerJson;
  const vocabulary = llamaCppVocabulary(tokenizer, config.vocabSize);
  const weights = options.weights === 'dummy' ? dummyWeights(config, options.seed ?? 0) : await loadCheckpointWeights(modelDir, config);
  const bos = config.bosTokenId;
  const eos = config.eosTokenIds[0];
  const unknown = vocabulary.types.indexOf(tokenType.unknown);
  const u32 = (value: number): GgufValue => ({ type: 'uint32', value });
  const metadata = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: options.name ?? 'pagoda-export' }],
    ['general.file_type', u32(0)],
    ['llama.vocab_size', u32(config.vocabSize)],
    ['llama.context_length', u32(config.maxPositionEmbeddings)],
    ['llama.embedding_length', u32(config.hiddenSize)],
    ['llama.block_count', u32(config.numLayers)],
    ['llama.feed_forward_length', u32(config.intermediateSize)],
    ['llama.attention.head_count', u32(config.numHeads)],
    ['llama.attention.head_count_kv', u32(config.numKvHeads)],
    ['llama.attention.key_length', u32(config.headDim)],
    ['llama.attention.value_length', u32(config.headDim)],
    ['llama.rope.dimension_count', u32(config.headDim)],
    ['llama.rope.freq_base', { type: 'float32', value: config.ropeTheta }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'float32', value: config.rmsNormEps }],
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', elementType: 'string', values: vocabulary.tokens }],
    ['tokenizer.ggml.scores', { type: 'array', elementType: 'float32', values: vocabulary.scores }],
    ['tokenizer.ggml.token_type', { type: 'array', elementType: 'int32', values: vocabulary.types }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: bos !== undefined }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ]);
  if (bos !== undefined) metadata.set('tokenizer.ggml.bos_token_id', u32(bos));
  if (eos !== undefined) metadata.set('tokenizer.ggml.eos_token_id', u32(eos));
  if (unknown !== -1) metadata.set('tokenizer.ggml.unknown_token_id', u32(unknown));
  const tensors = await llamaCppTensors(config, weights);
  await writeGguf(file, metadata, tensors);
  return { config, tensorCount: tensors.length };
}

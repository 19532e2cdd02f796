import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { LRUCache } from 'lru-cache';
import { join } from 'node:path';
import { PagodaEngineError } from '../errors';
import { readJsonFile } from '../json-file';

/** One chat message, as OpenAI's API and Hugging Face chat templates take it. */
export interface ChatMessage {
  role: string;
  content: string | null | Array<{ type: string; text?: string }>;
  name?: string;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn's opening so the model answers (default true). */
  addGenerationPrompt?: boolean;
  /** Extra variables for the template, such as `enable_thinking`. */
  templateKwargs?: Record<string, unknown>;
  tools?: unknown[];
  /** A template to use instead of the checkpoint's. */
  chatTemplate?: string;
}

/** Compiled chat templates kept per tokenizer: the model's own and recent request templates. */
const compiledTemplateCacheSize = 32;

/** The text-side contract of a checkpoint's tokenizer, as the engine uses it. */
export class TextTokenizer {
  private readonly chatTemplates: ReadonlyMap<string, string>;
  /** Bounded: request templates (`chat_template` in a request body) are each compiled once, then evicted LRU. */
  private readonly compiledTemplates = new LRUCache<string, Template>({ max: compiledTemplateCacheSize });
  /**
   * The most bytes of input text one token can stand for: the longest vocabulary or added token, in UTF-8 bytes,
   * times how much the normalizer may shrink text before it is split (see {@link normalizerShrinkFactor}).
   * `Infinity` when the normalizer can delete text without limit. A text of `B` bytes has at least
   * `B / maxInputBytesPerToken` tokens, which bounds a prompt's size before it is tokenized.
   */
  readonly maxInputBytesPerToken: number;
  /** How a vocabulary string maps to the bytes it stands for (see {@link tokenBytes}). */
  private readonly byteEncoding: 'byte-level' | 'sentencepiece' | 'text';
  /** Token ids that decode to nothing when special tokens are skipped. */
  readonly specialTokenIds: ReadonlySet<number>;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;

  constructor(
    readonly tokenizer: Tokenizer,
    readonly config: Readonly<Record<string, unknown>>,
    tokenizerJson: unknown = {},
  ) {
    this.maxInputBytesPerToken = longestTokenBytes(tokenizerJson) * normalizerShrinkFactor((tokenizerJson as { normalizer?: unknown }).normalizer);
    const decoder = JSON.stringify((tokenizerJson as { decoder?: unknown }).decoder ?? null);
    this.byteEncoding = decoder.includes('"ByteLevel"') ? 'byte-level' : decoder.includes('"ByteFallback"') ? 'sentencepiece' : 'text';
    this.chatTemplates = readChatTemplates(config.chat_template);
    const special = new Set<number>();
    for (const [id, token] of tokenizer.get_added_tokens_decoder()) if (token.special) special.add(id);
    this.specialTokenIds = special;
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    this.bosTokenId = this.bosToken === undefined ? undefined : tokenizer.token_to_id(this.bosToken);
    this.eosTokenId = this.eosToken === undefined ? undefined : tokenizer.token_to_id(this.eosToken);
  }

  /** Loads `tokenizer.json` and `tokenizer_config.json` from a checkpoint folder. */
  static async load(modelDir: string): Promise<TextTokenizer> {
    const [tokenizerJson, tokenizerConfig] = await Promise.all([
      readJson(join(modelDir, 'tokenizer.json'), true),
      readJson(join(modelDir, 'tokenizer_config.json'), false),
    ]);
    const config = (tokenizerConfig ?? {}) as Record<string, unknown>;
    return new TextTokenizer(new Tokenizer(tokenizerJson as object, config), config, tokenizerJson);
  }

  /** Token ids of `text`; with special tokens (BOS and the like) as tokenizer.json's post-processor adds them. */
  encode(text: string, { addSpecialTokens = true }: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(tokenIds: readonly number[], { skipSpecialTokens = true }: { skipSpecialTokens?: boolean } = {}): string {
    if (tokenIds.length === 0) return '';
    return this.tokenizer.decode([...tokenIds], { skip_special_tokens: skipSpecialTokens });
  }

  /**
   * The raw bytes a token stands for, as OpenAI's logprob `bytes` give them, so that a client can rebuild text that a
   * multi-byte character splits across tokens: a byte-level token's characters are one byte each (GPT-2's byte
   * alphabet), a SentencePiece byte-fallback token `<0xE4>` is that byte and `▁` a space; anything else (added
   * tokens, other tokenizers) is its text in UTF-8.
   */
  tokenBytes(tokenId: number): number[] {
    const token = this.tokenizer.id_to_token(tokenId);
    if (token === undefined || this.specialTokenIds.has(tokenId)) return [...Buffer.from(this.decode([tokenId], { skipSpecialTokens: false }), 'utf8')];
    if (this.byteEncoding === 'byte-level') {
      const bytes = [...token].map((character) => byteLevelDecoder.get(character));
      if (bytes.every((byte) => byte !== undefined)) return bytes as number[];
    } else if (this.byteEncoding === 'sentencepiece') {
      const fallback = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
      if (fallback) return [Number.parseInt(fallback[1]!, 16)];
      return [...Buffer.from(token.replaceAll('\u2581', ' '), 'utf8')];
    }
    return [...Buffer.from(this.decode([tokenId], { skipSpecialTokens: false }), 'utf8')];
  }

  /** The token's string in the vocabulary (for logprobs), or `undefined` outside it. */
  idToToken(tokenId: number): string | undefined {
    return this.tokenizer.id_to_token(tokenId);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplates.size > 0;
  }

  /** The checkpoint's chat template text (its `tool_use` one when asked and present), to recognise its formats. */
  chatTemplateSource({ tools = false }: { tools?: boolean } = {}): string | undefined {
    return (tools ? this.chatTemplates.get('tool_use') : undefined) ?? this.chatTemplates.get('default');
  }

  /** Renders a conversation with the checkpoint's chat template (Jinja, as transformers' `apply_chat_template`). */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    const source = options.chatTemplate ?? this.chatTemplates.get(options.tools?.length ? 'tool_use' : 'default') ?? this.chatTemplates.get('default');
    if (source === undefined) {
      throw new PagodaEngineError(
        'no_chat_template',
        'this model has no chat template (tokenizer_config.json has no chat_template); use completions, or pass a chat template',
      );
    }
    try {
      let template = this.compiledTemplates.get(source);
      if (template === undefined) {
        template = new Template(source);
        this.compiledTemplates.set(source, template);
      }
      return template.render({
        ...options.templateKwargs,
        messages,
        tools: options.tools,
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.bosToken ?? '',
        eos_token: this.eosToken ?? '',
      });
    } catch (error) {
      if (PagodaEngineError.isInstance(error)) throw error;
      throw new PagodaEngineError('chat_template_error', `the chat template failed: ${(error as Error).message}`, { cause: error });
    }
  }
}

/**
 * GPT-2's byte-level alphabet, inverted: printable bytes stand for themselves, the other 68 for characters from
 * U+0100 on, in byte order (`Ġ` is the space).
 */
const byteLevelDecoder: ReadonlyMap<string, number> = (() => {
  const printable = (byte: number) => (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
  const decoder = new Map<string, number>();
  let next = 0;
  for (let byte = 0; byte < 256; byte += 1) decoder.set(String.fromCodePoint(printable(byte) ? byte : 256 + next++), byte);
  return decoder;
})();

/**
 * The longest token of a tokenizer.json (BPE, WordPiece or Unigram vocabulary, and added tokens) in bytes of the
 * text it stands for: for a byte-level tokenizer each character of a vocabulary string is one byte (`Ġ` is a space),
 * otherwise the string's own UTF-8 bytes (at least what it covers: `▁` stands for a one-byte space).
 */
function longestTokenBytes(tokenizerJson: unknown): number {
  const json = tokenizerJson as { model?: { vocab?: unknown }; added_tokens?: Array<{ content?: unknown }>; decoder?: unknown };
  const byteLevel = JSON.stringify(json.decoder ?? null).includes('"ByteLevel"');
  let longest = 1;
  const consider = (token: unknown, raw: boolean) => {
    if (typeof token === 'string') longest = Math.max(longest, raw && byteLevel ? [...token].length : Buffer.byteLength(token, 'utf8'));
  };
  const vocab = json.model?.vocab;
  if (Array.isArray(vocab)) for (const entry of vocab) consider(Array.isArray(entry) ? entry[0] : entry, true);
  else if (typeof vocab === 'object' && vocab !== null) for (const token of Object.keys(vocab)) consider(token, true);
  for (const added of json.added_tokens ?? []) consider(added.content, false);
  return longest;
}

/**
 * How many times smaller a normalizer can make a text. The raw vocabulary strings bound what a token covers of the
 * normalized text (byte-level alphabets and SentencePiece's `▁` are at least as long as the bytes they stand for),
 * so only normalizers that shrink text widen the bound: NFC and NFKC compose up to three code points into one
 * (Hangul jamo: 9 bytes into 3); a `Replace` whose content is shorter than its pattern shrinks by their ratio.
 * Normalizers that may delete any amount of text (strip, accent stripping, BERT's cleaning) leave no bound.
 */
function normalizerShrinkFactor(normalizer: unknown): number {
  if (normalizer === null || normalizer === undefined) return 1;
  const spec = normalizer as { type?: unknown; normalizers?: unknown[]; pattern?: { String?: unknown; Regex?: unknown }; content?: unknown };
  switch (spec.type) {
    case 'Sequence':
      return (spec.normalizers ?? []).reduce<number>((factor, inner) => factor * normalizerShrinkFactor(inner), 1);
    case 'Prepend':
    case 'NFD':
    case 'NFKD':
      return 1;
    case 'NFC':
    case 'NFKC':
      return 3;
    case 'Replace': {
      const pattern = spec.pattern?.String;
      const content = typeof spec.content === 'string' ? Buffer.byteLength(spec.content) : 0;
      if (typeof pattern !== 'string' || content === 0) return Infinity;
      return Math.max(1, Buffer.byteLength(pattern) / content);
    }
    default:
      return Infinity;
  }
}

function readChatTemplates(value: unknown): Map<string, string> {
  const templates = new Map<string, string>();
  if (typeof value === 'string') templates.set('default', value);
  else if (Array.isArray(value)) {
    for (const entry of value as Array<{ name?: unknown; template?: unknown }>) {
      if (typeof entry?.name === 'string' && typeof entry.template === 'string') templates.set(entry.name, entry.template);
    }
  }
  return templates;
}

function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

function readJson(file: string, required: boolean): Promise<unknown> {
  return readJsonFile(file, {
    optional: !required,
    error: (problem, cause) =>
      problem === 'unreadable'
        ? new PagodaEngineError('tokenizer_missing', `${file}: cannot read the tokenizer file`, { cause })
        : new PagodaEngineError('tokenizer_invalid', `${file}: is not valid JSON`, { cause }),
  });
}

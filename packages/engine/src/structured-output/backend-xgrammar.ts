import type { StructuredOutputsSpec } from '@pagoda/sampling';
import { StructuredOutputError } from '../errors';
import type { StructuredOutputBackend, StructuredOutputGrammar } from './backend';
import type { XGrammarVocabulary } from './tokenizer-info';
import { captureXGrammarErrors, loadXGrammar, type XGrammarModule } from './xgrammar-loader';

type CompiledGrammar = InstanceType<XGrammarModule['CompiledGrammar']>;
type GrammarCompiler = Awaited<ReturnType<XGrammarModule['GrammarCompiler']['createGrammarCompiler']>>;
type GrammarMatcher = Awaited<ReturnType<XGrammarModule['GrammarMatcher']['createGrammarMatcher']>>;

export interface XGrammarBackendOptions {
  readonly vocabulary: XGrammarVocabulary;
  /** The model's end-of-sequence ids: a finished grammar allows only these. */
  readonly stopTokenIds: readonly number[];
  /** vLLM's `disable_any_whitespace`: JSON without free whitespace between its elements (default false). */
  readonly disableAnyWhitespace?: boolean;
}

/**
 * XGrammar (its WASM build, `@mlc-ai/web-xgrammar`), as vLLM's `backend_xgrammar.py` drives the native one:
 *
 * - `json` compiles the schema (strict: no properties the schema does not name), `jsonObject` the schema
 *   `{"type": "object"}`, `grammar` the EBNF, `structuralTag` the tag spec (vLLM's legacy `structures` + `triggers`
 *   form is turned into `triggered_tags`);
 * - `regex`: the WASM build has no `compileRegex`, so it goes through a structural tag of `regex` format, which
 *   XGrammar compiles with the same regex converter;
 * - `choice`: an EBNF alternation of the quoted strings, as vLLM's `choice_as_grammar`.
 *
 * Its compiler's own cache is off: after a failed compilation (the WASM module aborts) the cache holds an entry
 * that never completes and the next compile of it hangs. Compiled grammars are cached here instead, by key.
 * Everything runs on the calling thread, synchronously inside each promise: keep it off the step loop's thread.
 */
export class XGrammarBackend implements StructuredOutputBackend {
  private readonly compiled = new Map<string, CompiledGrammar>();

  private constructor(
    private readonly xgrammar: XGrammarModule,
    private readonly compiler: GrammarCompiler,
    readonly vocabSize: number,
    private readonly disableAnyWhitespace: boolean,
  ) {}

  /** Builds the tokenizer info and the compiler (about 160 ms for Qwen's 151,936 tokens). */
  static async create(options: XGrammarBackendOptions): Promise<XGrammarBackend> {
    const xgrammar = await loadXGrammar();
    const { encodedVocab, vocabType, prependSpaceInTokenization } = options.vocabulary;
    const tokenizerInfo = await xgrammar.TokenizerInfo.createTokenizerInfo(
      encodedVocab,
      vocabType,
      prependSpaceInTokenization,
      encodedVocab.length,
      [...options.stopTokenIds],
    );
    const compiler = await xgrammar.GrammarCompiler.createGrammarCompiler(tokenizerInfo, false);
    return new XGrammarBackend(xgrammar, compiler, encodedVocab.length, options.disableAnyWhitespace ?? false);
  }

  isCompiled(key: string): boolean {
    return this.compiled.has(key);
  }

  async compile(key: string, spec: StructuredOutputsSpec): Promise<StructuredOutputGrammar> {
    let compiled = this.compiled.get(key);
    if (compiled === undefined) {
      const { result, error, messages } = await captureXGrammarErrors(() => this.compileSpec(spec));
      if (result === undefined) {
        const reason = messages.map(cleanMessage).find((message) => message.length > 0 && message !== 'Aborted()');
        throw new StructuredOutputError(
          `structured_outputs.${apiName(spec.kind)} could not be compiled: ${reason ?? (error as Error)?.message ?? String(error)}`,
          { cause: error, kind: spec.kind },
        );
      }
      compiled = result;
      this.compiled.set(key, compiled);
    }
    return new XGrammarGrammar(await this.xgrammar.GrammarMatcher.createGrammarMatcher(compiled), this.vocabSize);
  }

  dispose(): void {
    for (const compiled of this.compiled.values()) compiled.dispose();
    this.compiled.clear();
    this.compiler.dispose();
  }

  private compileSpec(spec: StructuredOutputsSpec): Promise<CompiledGrammar> {
    const anyWhitespace = !this.disableAnyWhitespace;
    switch (spec.kind) {
      case 'json':
        return this.compiler.compileJSONSchema(typeof spec.value === 'string' ? spec.value : JSON.stringify(spec.value), anyWhitespace, -1, undefined, true);
      case 'jsonObject':
        return this.compiler.compileJSONSchema('{"type": "object"}', anyWhitespace, -1, undefined, true);
      case 'regex':
        return this.compiler.compileStructuralTag({ type: 'structural_tag', format: { type: 'regex', pattern: spec.value } });
      case 'choice':
        return this.compiler.compileGrammar(choiceGrammar(spec.value));
      case 'grammar':
        return this.compiler.compileGrammar(spec.value);
      case 'structuralTag': {
        const format = structuralTagFormat(spec.value);
        if (anyWhitespace || typeof format === 'string') return this.compiler.compileStructuralTag(format);
        return this.compileStrictStructuralTag(format);
      }
    }
  }

  /**
   * A structural tag whose JSON-schema contents allow no free whitespace, as `json` does under
   * `disableAnyWhitespace`: XGrammar's structural tags take no whitespace setting, so each `json_schema` content
   * becomes the `grammar` XGrammar's own schema converter makes of it without free whitespace.
   */
  private async compileStrictStructuralTag(format: Record<string, unknown>): Promise<CompiledGrammar> {
    const convert = async (node: unknown): Promise<unknown> => {
      if (Array.isArray(node)) return Promise.all(node.map(convert));
      if (typeof node !== 'object' || node === null) return node;
      const fields = node as Record<string, unknown>;
      if (fields.type === 'json_schema' && fields.json_schema !== undefined) {
        const schema = typeof fields.json_schema === 'string' ? fields.json_schema : JSON.stringify(fields.json_schema);
        const grammar = await this.xgrammar.Grammar.fromJSONSchema(schema, false, -1, undefined, true);
        try {
          return { type: 'grammar', grammar: grammar.toString() };
        } finally {
          grammar.dispose();
        }
      }
      return Object.fromEntries(await Promise.all(Object.entries(fields).map(async ([key, value]) => [key, await convert(value)])));
    };
    return this.compiler.compileStructuralTag((await convert(format)) as Record<string, unknown>);
  }
}

class XGrammarGrammar implements StructuredOutputGrammar {
  constructor(
    private readonly matcher: GrammarMatcher,
    private readonly vocabSize: number,
  ) {}

  acceptTokens(tokenIds: readonly number[]): boolean {
    for (const tokenId of tokenIds) {
      // A terminated matcher aborts on any further call: a stop token ended it, and nothing may follow.
      if (this.matcher.isTerminated() || !this.matcher.acceptToken(tokenId)) return false;
    }
    return true;
  }

  async fillBitmask(bitmask: Int32Array, offset: number): Promise<void> {
    const words = Math.ceil(this.vocabSize / 32);
    // After the stop token nothing is asked of it (vLLM leaves such a row unmasked); XGrammar would abort.
    if (this.matcher.isTerminated()) {
      bitmask.fill(-1, offset, offset + words);
      return;
    }
    bitmask.set((await this.matcher.getNextTokenBitmask()).subarray(0, words), offset);
  }

  rollback(numTokens: number): void {
    if (numTokens > 0) this.matcher.rollBack(numTokens);
  }

  reset(): void {
    this.matcher.reset();
  }

  isTerminated(): boolean {
    return this.matcher.isTerminated();
  }

  dispose(): void {
    this.matcher.dispose();
  }
}

/** `root ::= "a" | "b"`, each choice a quoted EBNF string. */
export function choiceGrammar(choices: readonly string[]): string {
  return `root ::= ${choices.map((choice) => JSON.stringify(choice)).join(' | ')}`;
}

/**
 * A structural tag in XGrammar's current form. vLLM's older form (`{"type": "structural_tag", "structures": [{begin,
 * schema, end}], "triggers": [...]}`) becomes `triggered_tags` of `json_schema` contents, as XGrammar converts it.
 */
function structuralTagFormat(value: string | Readonly<Record<string, unknown>>): Record<string, unknown> | string {
  let spec: unknown = value;
  if (typeof value === 'string') {
    try {
      spec = JSON.parse(value);
    } catch {
      return value; // XGrammar reports the parse error
    }
  }
  const legacy = spec as { structures?: Array<{ begin: string; schema: unknown; end: string }>; triggers?: string[] };
  if (Array.isArray(legacy.structures)) {
    return {
      type: 'structural_tag',
      format: {
        type: 'triggered_tags',
        triggers: legacy.triggers ?? [],
        tags: legacy.structures.map((structure) => ({
          type: 'tag',
          begin: structure.begin,
          content: { type: 'json_schema', json_schema: structure.schema },
          end: structure.end,
        })),
      },
    };
  }
  return spec as Record<string, unknown>;
}

/** `[FATAL] /path/to/json_schema_converter.cc:902: Unsupported type "x"` → `Unsupported type "x"`. */
function cleanMessage(message: string): string {
  return message.replace(/^\[FATAL\]\s*\S+:\d+:\s*/, '').trim();
}

function apiName(kind: StructuredOutputsSpec['kind']): string {
  return kind.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

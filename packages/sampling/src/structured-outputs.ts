import { SamplingParamsError, describeValue } from './errors';

/**
 * vLLM's `structured_outputs` (its `StructuredOutputsParams`), as plain data: exactly one kind of constraint. This
 * package only carries and checks it; the engine compiles it into a grammar whose allowed-token bitmask reaches the
 * sampler as {@link SamplingRow.allowedTokenBitmask}.
 *
 * - `json`: a JSON schema, as an object or as its JSON text;
 * - `jsonObject: true`: any JSON object (OpenAI's `json_object` response format);
 * - `regex`: a regular expression the whole output matches;
 * - `choice`: the output is exactly one of these strings;
 * - `grammar`: an EBNF grammar (XGrammar's dialect, whose start rule is `root`);
 * - `structuralTag`: XGrammar's structural tag spec (an object or its JSON text), as tool calling uses it.
 */
export interface StructuredOutputsParams {
  readonly json?: string | Readonly<Record<string, unknown>> | null;
  readonly jsonObject?: boolean | null;
  readonly regex?: string | null;
  readonly choice?: readonly string[] | null;
  readonly grammar?: string | null;
  readonly structuralTag?: string | Readonly<Record<string, unknown>> | null;
}

/** The one constraint of a validated {@link StructuredOutputsParams}: its kind and its value. */
export type StructuredOutputsSpec =
  | { readonly kind: 'json'; readonly value: string | Readonly<Record<string, unknown>> }
  | { readonly kind: 'jsonObject'; readonly value: true }
  | { readonly kind: 'regex'; readonly value: string }
  | { readonly kind: 'choice'; readonly value: readonly string[] }
  | { readonly kind: 'grammar'; readonly value: string }
  | { readonly kind: 'structuralTag'; readonly value: string | Readonly<Record<string, unknown>> };

/** The API (snake_case) name of each kind, as `SamplingParamsError.param` reports it: `structured_outputs.json`. */
const apiNames: Readonly<Record<StructuredOutputsSpec['kind'], string>> = {
  json: 'json',
  jsonObject: 'json_object',
  regex: 'regex',
  choice: 'choice',
  grammar: 'grammar',
  structuralTag: 'structural_tag',
};

const kinds = Object.keys(apiNames) as Array<StructuredOutputsSpec['kind']>;

/**
 * Checks `structured_outputs` and returns it with only its one constraint set (frozen), or null when it is absent,
 * so normalizing twice gives the same. Throws a {@link SamplingParamsError} whose `param` names the field
 * (`structured_outputs`, or `structured_outputs.choice`): no kind or more than one set, an unknown field, or a value
 * of the wrong type. Whether a schema or grammar compiles is the engine's to say, when it compiles it.
 */
export function normalizeStructuredOutputs(value: unknown): StructuredOutputsParams | null {
  if (value == null) return null;
  const spec = structuredOutputsSpec(value as StructuredOutputsParams);
  return Object.freeze({ [spec.kind]: spec.value });
}

/** The one constraint of `structured_outputs` as a kind and its value; throws as {@link normalizeStructuredOutputs}. */
export function structuredOutputsSpec(value: StructuredOutputsParams): StructuredOutputsSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SamplingParamsError({ param: 'structured_outputs', expected: 'an object with one constraint', value });
  }
  const fields = value as Record<string, unknown>;
  const unknownField = Object.keys(fields).find((name) => !(kinds as string[]).includes(name) && fields[name] != null);
  if (unknownField !== undefined) {
    throw new SamplingParamsError({
      param: `structured_outputs.${unknownField}`,
      expected: `one of ${kinds.map((kind) => apiNames[kind]).join(', ')}`,
      value: unknownField,
      message: `structured_outputs has no field ${JSON.stringify(unknownField)}; it takes one of ${kinds.map((kind) => apiNames[kind]).join(', ')}`,
    });
  }
  const present = kinds.filter((kind) => fields[kind] != null && !(kind === 'jsonObject' && fields[kind] === false));
  if (present.length !== 1) {
    throw new SamplingParamsError({
      param: 'structured_outputs',
      expected: `exactly one of ${kinds.map((kind) => apiNames[kind]).join(', ')}`,
      value: present.map((kind) => apiNames[kind]),
      message:
        present.length === 0
          ? `structured_outputs must set one of ${kinds.map((kind) => apiNames[kind]).join(', ')}, got none`
          : `structured_outputs must set exactly one constraint, got ${present.map((kind) => apiNames[kind]).join(' and ')}`,
    });
  }
  const kind = present[0]!;
  const received = fields[kind];
  const param = `structured_outputs.${apiNames[kind]}`;
  switch (kind) {
    case 'json':
    case 'structuralTag':
      if (typeof received === 'string') {
        if (received.trim().length === 0) throw new SamplingParamsError({ param, expected: 'a non-empty JSON text or an object', value: received });
        return { kind, value: received };
      }
      if (typeof received === 'object' && !Array.isArray(received)) return { kind, value: received as Record<string, unknown> };
      // JSON Schema allows `true` and `false` as whole schemas, but neither constrains (or permits) an output usefully.
      throw new SamplingParamsError({ param, expected: 'an object or its JSON text', value: received });
    case 'jsonObject':
      if (received !== true) throw new SamplingParamsError({ param, expected: 'true', value: received });
      return { kind, value: true };
    case 'regex':
    case 'grammar':
      if (typeof received !== 'string' || received.length === 0) {
        throw new SamplingParamsError({ param, expected: 'a non-empty string', value: received });
      }
      return { kind, value: received };
    case 'choice': {
      if (!Array.isArray(received) || received.length === 0) {
        throw new SamplingParamsError({ param, expected: 'a non-empty list of strings', value: received });
      }
      const bad = received.find((choice) => typeof choice !== 'string' || choice.length === 0);
      if (bad !== undefined) {
        throw new SamplingParamsError({
          param,
          expected: 'non-empty strings',
          value: bad,
          message: `${param} must hold non-empty strings, got ${describeValue(bad)}`,
        });
      }
      return { kind, value: Object.freeze(received.slice() as string[]) };
    }
  }
}

/**
 * The spec's canonical text: equal constraints give equal keys (object keys sorted, a JSON text parsed and printed
 * again), so a compiled grammar can be cached by it. A JSON text that does not parse keeps its own text: compiling
 * it reports the error.
 */
export function structuredOutputsKey(spec: StructuredOutputsSpec): string {
  let value: unknown = spec.value;
  if ((spec.kind === 'json' || spec.kind === 'structuralTag') && typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      return `${spec.kind}:${value as string}`;
    }
  }
  return `${spec.kind}:${canonicalJson(value)}`;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

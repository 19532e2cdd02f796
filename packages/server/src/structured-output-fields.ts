import type { StructuredOutputsParams } from '@pagoda/engine';
import { ApiError } from './http-error';

/** The request fields that may carry a constraint, each mapped onto the engine's `structuredOutputs`. */
export interface StructuredOutputFields {
  readonly response_format?: { readonly type: string; readonly json_schema?: { readonly schema?: Readonly<Record<string, unknown>> } } | null;
  readonly structured_outputs?: Readonly<Record<string, unknown>> | null;
  readonly guided_json?: Readonly<Record<string, unknown>> | string | null;
  readonly guided_regex?: string | null;
  readonly guided_choice?: readonly string[] | null;
  readonly guided_grammar?: string | null;
}

/** A constraint and the field the client gave it in, to name in errors about it. */
export interface RequestedConstraint {
  readonly structuredOutputs: StructuredOutputsParams;
  readonly param: string;
}

/** vLLM's snake_case `structured_outputs` fields in the engine's camelCase. */
const engineNames: Readonly<Record<string, string>> = { json_object: 'jsonObject', structural_tag: 'structuralTag' };

/**
 * The request's output constraint, from whichever field carries it: OpenAI's `response_format` (`json_object`, or
 * `json_schema` with its schema; `text` is none), vLLM's `structured_outputs`, or its older `guided_json`,
 * `guided_regex`, `guided_choice` and `guided_grammar`. More than one, or a `response_format` of an unknown type, is a
 * 400 naming the field.
 */
export function readConstraint(body: StructuredOutputFields): RequestedConstraint | undefined {
  const found: RequestedConstraint[] = [];
  const format = body.response_format;
  if (format !== undefined && format !== null) {
    if (format.type === 'json_object') found.push({ structuredOutputs: { jsonObject: true }, param: 'response_format' });
    else if (format.type === 'json_schema') {
      const schema = format.json_schema?.schema;
      if (schema === undefined) throw new ApiError(400, 'response_format.json_schema.schema is required for a json_schema response format', 'response_format');
      found.push({ structuredOutputs: { json: schema }, param: 'response_format' });
    } else if (format.type !== 'text') {
      throw new ApiError(400, `response_format.type must be one of text, json_object, json_schema, got ${JSON.stringify(format.type)}`, 'response_format');
    }
  }
  if (body.structured_outputs !== undefined && body.structured_outputs !== null) {
    const fields = Object.fromEntries(Object.entries(body.structured_outputs).map(([name, value]) => [engineNames[name] ?? name, value]));
    found.push({ structuredOutputs: fields as StructuredOutputsParams, param: 'structured_outputs' });
  }
  const guided: Array<[string, keyof StructuredOutputsParams, unknown]> = [
    ['guided_json', 'json', body.guided_json],
    ['guided_regex', 'regex', body.guided_regex],
    ['guided_choice', 'choice', body.guided_choice],
    ['guided_grammar', 'grammar', body.guided_grammar],
  ];
  for (const [param, kind, value] of guided) {
    if (value !== undefined && value !== null) found.push({ structuredOutputs: { [kind]: value } as StructuredOutputsParams, param });
  }
  if (found.length > 1) {
    throw new ApiError(400, `give one output constraint, got ${found.map((constraint) => constraint.param).join(' and ')}`, found[1]!.param);
  }
  return found[0];
}

/** An engine error about `structured_outputs.*`, named after the field the client used (`response_format`, `guided_json`). */
export function renameConstraintParam(error: unknown, constraint: RequestedConstraint | undefined): unknown {
  const param = (error as { param?: unknown }).param;
  if (constraint === undefined || typeof param !== 'string' || !param.startsWith('structured_outputs') || !(error instanceof Error)) return error;
  if (constraint.param === 'structured_outputs') return new ApiError(400, error.message, param);
  return new ApiError(400, error.message.replace(/^structured_outputs(\.\w+)?/, constraint.param), constraint.param);
}


import { describe, expect, it } from 'vitest';
import type { SamplingParams } from './index';
import { SamplingParamsError, structuredOutputsKey, structuredOutputsSpec, validateSamplingParams } from './index';

const options = { vocabSize: 1000 };

function errorOf(structuredOutputs: unknown): SamplingParamsError {
  try {
    validateSamplingParams({ structuredOutputs } as SamplingParams, options);
  } catch (error) {
    if (SamplingParamsError.isInstance(error)) return error;
    throw error;
  }
  throw new Error(`accepted ${JSON.stringify(structuredOutputs)}`);
}

describe('structured_outputs', () => {
  it('is null when absent, and keeps exactly the one constraint set', () => {
    expect(validateSamplingParams({}, options).structuredOutputs).toBeNull();
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } } };
    expect(validateSamplingParams({ structuredOutputs: { json: schema, regex: null } }, options).structuredOutputs).toEqual({ json: schema });
    expect(validateSamplingParams({ structuredOutputs: { jsonObject: true } }, options).structuredOutputs).toEqual({ jsonObject: true });
    expect(validateSamplingParams({ structuredOutputs: { choice: ['yes', 'no'] } }, options).structuredOutputs).toEqual({ choice: ['yes', 'no'] });
  });

  it('normalizes to itself: validating validated params changes nothing', () => {
    const once = validateSamplingParams({ structuredOutputs: { regex: '[a-z]+', jsonObject: false } }, options);
    expect(validateSamplingParams(once, options)).toEqual(once);
    expect(structuredOutputsSpec(once.structuredOutputs!)).toEqual({ kind: 'regex', value: '[a-z]+' });
  });

  it.each([
    [{}, 'structured_outputs', 'structured_outputs must set one of json, json_object, regex, choice, grammar, structural_tag, got none'],
    [{ json: {}, regex: 'a' }, 'structured_outputs', 'structured_outputs must set exactly one constraint, got json and regex'],
    [{ jsonSchema: {} }, 'structured_outputs.jsonSchema', 'structured_outputs has no field "jsonSchema"; it takes one of json, json_object, regex, choice, grammar, structural_tag'],
    ['{"type":"object"}', 'structured_outputs', 'structured_outputs must be an object with one constraint, got "{\\"type\\":\\"object\\"}"'],
    [{ json: 3 }, 'structured_outputs.json', 'structured_outputs.json must be an object or its JSON text, got 3'],
    [{ json: ' ' }, 'structured_outputs.json', 'structured_outputs.json must be a non-empty JSON text or an object, got " "'],
    [{ jsonObject: 'yes' }, 'structured_outputs.json_object', 'structured_outputs.json_object must be true, got "yes"'],
    [{ regex: '' }, 'structured_outputs.regex', 'structured_outputs.regex must be a non-empty string, got ""'],
    [{ choice: [] }, 'structured_outputs.choice', 'structured_outputs.choice must be a non-empty list of strings, got []'],
    [{ choice: ['a', 2] }, 'structured_outputs.choice', 'structured_outputs.choice must hold non-empty strings, got 2'],
    [{ grammar: 7 }, 'structured_outputs.grammar', 'structured_outputs.grammar must be a non-empty string, got 7'],
    [{ structuralTag: [1] }, 'structured_outputs.structural_tag', 'structured_outputs.structural_tag must be an object or its JSON text, got [1]'],
  ])('refuses %j, naming %s', (value, param, message) => {
    const error = errorOf(value);
    expect(error.param).toBe(param);
    expect(error.code).toBe('invalid_sampling_params');
    expect(error.message).toBe(message);
  });

  it('keys equal constraints equally, whatever their key order or form', () => {
    const key = (value: SamplingParams['structuredOutputs']) => structuredOutputsKey(structuredOutputsSpec(value!));
    expect(key({ json: { type: 'object', required: ['a'] } })).toBe(key({ json: '{"required": ["a"], "type": "object"}' }));
    expect(key({ json: { type: 'object' } })).not.toBe(key({ structuralTag: { type: 'object' } }));
    expect(key({ choice: ['a', 'b'] })).not.toBe(key({ choice: ['b', 'a'] }));
    expect(key({ json: '{not json' })).toBe('json:{not json');
  });
});

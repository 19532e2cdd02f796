// Test oracles for structured outputs: a checker for the bounded JSON schemas the tests use, and a JSON-prefix check.

type Schema = Record<string, unknown>;

/** Whether `value` satisfies `schema`, for the keywords the tests use (type, enum, properties, bounds, lengths). */
export function satisfiesSchema(value: unknown, schema: Schema): boolean {
  if (Array.isArray(schema.enum)) return schema.enum.some((option) => JSON.stringify(option) === JSON.stringify(value));
  switch (schema.type) {
    case 'boolean':
      return typeof value === 'boolean';
    case 'integer':
    case 'number':
      return (
        typeof value === 'number' &&
        (schema.type === 'number' || Number.isInteger(value)) &&
        (typeof schema.minimum !== 'number' || value >= schema.minimum) &&
        (typeof schema.maximum !== 'number' || value <= schema.maximum)
      );
    case 'string':
      return (
        typeof value === 'string' &&
        (typeof schema.maxLength !== 'number' || [...value].length <= schema.maxLength) &&
        (typeof schema.pattern !== 'string' || new RegExp(schema.pattern, 'u').test(value))
      );
    case 'array':
      return (
        Array.isArray(value) &&
        (typeof schema.maxItems !== 'number' || value.length <= schema.maxItems) &&
        (typeof schema.minItems !== 'number' || value.length >= schema.minItems) &&
        value.every((item) => satisfiesSchema(item, schema.items as Schema))
      );
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
      const properties = (schema.properties ?? {}) as Record<string, Schema>;
      const record = value as Record<string, unknown>;
      if (((schema.required ?? []) as string[]).some((name) => !(name in record))) return false;
      return Object.entries(record).every(([name, field]) =>
        name in properties ? satisfiesSchema(field, properties[name]!) : schema.additionalProperties !== false,
      );
    }
    default:
      return true;
  }
}

/**
 * Whether `text` can be continued into valid JSON: some short completion of its last token (a string, a literal,
 * a number, a key) followed by the closing brackets it has opened makes it parse.
 */
export function isJsonPrefix(text: string): boolean {
  const completions = ['', '"', '0', 'n"', 'u0000"', '":0', '"":0', ':0', 'e', 'ue', 'rue', 'se', 'lse', 'alse', 'l', 'll', 'ull', '1', '0"'];
  return completions.some((completion) => {
    const candidate = text + completion;
    try {
      JSON.parse(candidate + closers(candidate));
      return true;
    } catch {
      return false;
    }
  });
}

function closers(text: string): string {
  const stack: string[] = [];
  let inString = false;
  for (let index = 0; index < text.length; index += 1) {
    const character = text[index]!;
    if (inString) {
      if (character === '\\') index += 1;
      else if (character === '"') inString = false;
    } else if (character === '"') inString = true;
    else if (character === '{') stack.push('}');
    else if (character === '[') stack.push(']');
    else if (character === '}' || character === ']') stack.pop();
  }
  return (inString ? '"' : '') + stack.reverse().join('');
}

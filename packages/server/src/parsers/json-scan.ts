/**
 * Scanning JSON text that may still be arriving: where a value ends, if it has. Parsers use it to stream a tool
 * call's `arguments` exactly as the model writes them, and to find where one call's object ends.
 */

/** Index just past the whitespace from `start`. */
export function skipWhitespace(text: string, start: number): number {
  let index = start;
  while (index < text.length && (text[index] === ' ' || text[index] === '\n' || text[index] === '\r' || text[index] === '\t')) index += 1;
  return index;
}

/** The end (exclusive) of the JSON value starting at `start`, or -1 when the text ends before it does. */
export function scanValue(text: string, start: number): number {
  const first = text[start];
  if (first === undefined) return -1;
  if (first === '"') return scanString(text, start);
  if (first === '{' || first === '[') {
    let depth = 0;
    for (let index = start; index < text.length; index += 1) {
      const character = text[index]!;
      if (character === '"') {
        const end = scanString(text, index);
        if (end < 0) return -1;
        index = end - 1;
      } else if (character === '{' || character === '[') depth += 1;
      else if (character === '}' || character === ']') {
        depth -= 1;
        if (depth === 0) return index + 1;
      }
    }
    return -1;
  }
  // A number or a literal ends at a delimiter; at the end of the text it may still grow.
  let index = start;
  while (index < text.length && !/[\s,}\]]/.test(text[index]!)) index += 1;
  return index < text.length ? index : -1;
}

function scanString(text: string, start: number): number {
  for (let index = start + 1; index < text.length; index += 1) {
    if (text[index] === '\\') index += 1;
    else if (text[index] === '"') return index + 1;
  }
  return -1;
}

/** What is known so far of one tool call's JSON object (`{"name": ..., "arguments": ...}`). */
export interface ScannedCall {
  /** The function's name, once its string is complete. */
  readonly name: string | undefined;
  /** Where the arguments value starts, once its key is read. */
  readonly argumentsStart: number | undefined;
  /** Where it ends; -1 while it is still arriving. */
  readonly argumentsEnd: number;
  /** Just past the object's `}`; -1 while the object is incomplete. */
  readonly end: number;
}

/**
 * Reads a call object from `start` (its `{`), as far as the text goes. `argumentKeys` name the arguments' key:
 * `arguments` for Hermes and Mistral, `parameters` (or `arguments`) for Llama 3.
 */
export function scanCallObject(text: string, start: number, argumentKeys: readonly string[]): ScannedCall {
  let name: string | undefined;
  let argumentsStart: number | undefined;
  let argumentsEnd = -1;
  const partial = (): ScannedCall => ({ name, argumentsStart, argumentsEnd, end: -1 });
  let index = skipWhitespace(text, start + 1);
  while (index < text.length) {
    if (text[index] === '}') return { name, argumentsStart, argumentsEnd, end: index + 1 };
    if (text[index] === ',') {
      index = skipWhitespace(text, index + 1);
      continue;
    }
    const keyEnd = scanValue(text, index);
    if (keyEnd < 0 || text[index] !== '"') return partial();
    const key = JSON.parse(text.slice(index, keyEnd)) as string;
    index = skipWhitespace(text, keyEnd);
    if (text[index] !== ':') return partial();
    index = skipWhitespace(text, index + 1);
    if (index >= text.length) return partial();
    const valueEnd = scanValue(text, index);
    if (argumentKeys.includes(key)) {
      argumentsStart = index;
      argumentsEnd = valueEnd;
    }
    if (valueEnd < 0) return partial();
    if (key === 'name' && text[index] === '"') name = JSON.parse(text.slice(index, valueEnd)) as string;
    index = skipWhitespace(text, valueEnd);
  }
  return partial();
}

/** The error types of OpenAI's API, keyed by the HTTP status that carries each. One table, owned by the server. */
const errorTypes: Readonly<Record<number, string>> = {
  400: 'BadRequestError',
  401: 'AuthenticationError',
  403: 'PermissionDeniedError',
  404: 'NotFoundError',
  405: 'MethodNotAllowedError',
  408: 'RequestTimeoutError',
  413: 'RequestTooLargeError',
  415: 'UnsupportedMediaTypeError',
  429: 'RateLimitError',
  500: 'InternalServerError',
  503: 'ServiceUnavailableError',
};

/** An OpenAI-style error body: `{ error: { message, type, param, code } }`. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: number };
}

export function errorBody(status: number, message: string, param: string | null = null): ErrorBody {
  return { error: { message, type: errorTypes[status] ?? (status >= 500 ? 'InternalServerError' : 'BadRequestError'), param, code: status } };
}

/** An error the server answers with `status` and an OpenAI-style body naming `param`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    /** Extra response headers (`retry-after` on a 429). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** One of Ajv's errors, as fastify hands them over (Ajv runs with `verbose`, so `data` and `parentSchema` are set). */
export interface SchemaValidationError {
  readonly instancePath: string;
  readonly keyword: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly message?: string;
  readonly data?: unknown;
  readonly parentSchema?: Readonly<Record<string, unknown>>;
}

const typeWords: Readonly<Record<string, string>> = {
  number: 'a number',
  integer: 'an integer',
  string: 'a string',
  boolean: 'a boolean',
  array: 'an array',
  object: 'an object',
  null: 'null',
};

/** What a value is, in the words of an error message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number' && !Number.isFinite(value)) return `${value}, a number out of range (JSON numbers such as 1e400 overflow to it)`;
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return value.length > 40 ? 'a string' : JSON.stringify(value);
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** `/messages/0/content` as `messages[0].content`. */
function pathOf(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((path, segment) => (/^\d+$/.test(segment) ? `${path}[${segment}]` : path === '' ? segment : `${path}.${segment}`), '');
}

/**
 * Ajv's errors for a body as one OpenAI-style message and the top-level field it concerns. Ajv lists a union's
 * failed branches first and the union's own error last, so the last error is the outermost one.
 */
export function describeSchemaErrors(errors: readonly SchemaValidationError[]): { message: string; param: string | null } {
  const error = errors.at(-1);
  if (error === undefined) return { message: 'the request body is invalid', param: null };
  let path = pathOf(error.instancePath);
  if (error.keyword === 'required') path = path === '' ? String(error.params.missingProperty) : `${path}.${String(error.params.missingProperty)}`;
  const param = path === '' ? null : path.split(/[.[]/)[0]!;
  const subject = path === '' ? 'the request body' : path;
  switch (error.keyword) {
    case 'required':
      return { message: `${subject} is required`, param };
    case 'type': {
      const expected = [error.params.type].flat().map((type) => typeWords[String(type)] ?? String(type)).join(' or ');
      return { message: `${subject} must be ${expected}, got ${describeValue(error.data)}`, param };
    }
    case 'anyOf': {
      const expected = error.parentSchema?.['x-expected'];
      const words = typeof expected === 'string' ? expected : unionWords(error.parentSchema);
      return { message: `${subject} must be ${words}, got ${describeValue(error.data)}`, param };
    }
    default:
      return { message: `${subject} ${error.message ?? 'is invalid'}, got ${describeValue(error.data)}`, param };
  }
}

/** A union's branches in words, leaving out `null` (it always means "not given"). */
function unionWords(schema: Readonly<Record<string, unknown>> | undefined): string {
  const branches = (schema?.anyOf as Array<{ type?: string }> | undefined) ?? [];
  const words = branches.filter((branch) => branch.type !== 'null').map((branch) => typeWords[branch.type ?? ''] ?? 'a value of another shape');
  return words.length === 0 ? 'valid' : words.join(' or ');
}

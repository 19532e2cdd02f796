/** The error types of OpenAI's API, keyed by the HTTP status that carries each. One table, owned by the server. */
const errorTypes: Readonly<Record<number, string>> = {
  400: 'BadRequestError',
  401: 'AuthenticationError',
  404: 'NotFoundError',
  405: 'MethodNotAllowedError',
  429: 'RateLimitError',
  500: 'InternalServerError',
  503: 'ServiceUnavailableError',
};

/** An OpenAI-style error body: `{ error: { message, type, param, code } }`. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: number };
}

export function errorBody(status: number, message: string, param: string | null = null): ErrorBody {
  return { error: { message, type: errorTypes[status] ?? 'InternalServerError', param, code: status } };
}

/** An error the server answers with `status` and an OpenAI-style body naming `param`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

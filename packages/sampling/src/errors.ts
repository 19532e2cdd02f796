// Errors of @pagoda/sampling. `instanceof` fails when two copies of this package are installed (each has its own
// class), so every class also brands its instances with a `Symbol.for` marker that `isInstance` checks instead.

const samplingErrorMarker = 'pagoda.sampling.error';
const samplingErrorSymbol = Symbol.for(samplingErrorMarker);

function hasMarker(error: unknown, marker: string): boolean {
  return (
    error != null &&
    typeof error === 'object' &&
    (error as Record<symbol, unknown>)[Symbol.for(marker)] === true
  );
}

/** The base class of this package's errors: a stable `code` to branch on, and the `cause` when there is one. */
export class SamplingError extends Error {
  private readonly [samplingErrorSymbol] = true;

  /** A stable, machine-readable string; messages may change, codes do not. */
  readonly code: string;

  constructor({ code, message, cause }: { code: string; message: string; cause?: unknown }) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SamplingError';
    this.code = code;
  }

  /** True for any error of this family, including one thrown by another installed copy of this package. */
  static isInstance(error: unknown): error is SamplingError {
    return hasMarker(error, samplingErrorMarker);
  }
}

const paramsErrorMarker = 'pagoda.sampling.error.SamplingParamsError';
const paramsErrorSymbol = Symbol.for(paramsErrorMarker);

/**
 * A sampling parameter outside its valid range. `param` is the API (snake_case) name, as a client sent it, so a
 * server can report it as is; the message names the parameter, its valid range and the value received.
 */
export class SamplingParamsError extends SamplingError {
  private readonly [paramsErrorSymbol] = true;

  static readonly code = 'invalid_sampling_params';

  /** The parameter's API name, e.g. `top_p`. */
  readonly param: string;
  /** What a valid value looks like, e.g. `in (0, 1]`. */
  readonly expected: string;
  /** The value received. */
  readonly value: unknown;

  constructor({
    param,
    expected,
    value,
    message = `${param} must be ${expected}, got ${describeValue(value)}`,
    cause,
  }: {
    param: string;
    expected: string;
    value: unknown;
    message?: string;
    cause?: unknown;
  }) {
    super({ code: SamplingParamsError.code, message, cause });
    this.name = 'SamplingParamsError';
    this.param = param;
    this.expected = expected;
    this.value = value;
  }

  static override isInstance(error: unknown): error is SamplingParamsError {
    return hasMarker(error, paramsErrorMarker);
  }
}

/** Renders a received value for an error message: numbers as numbers, everything else as JSON where possible. */
export function describeValue(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

const marker = Symbol.for('pagoda.engine.error');

/** The base of every error @pagoda/engine throws on purpose. `code` is stable; match on it, not on the message. */
export class PagodaEngineError extends Error {
  readonly [marker] = true;
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PagodaEngineError';
    this.code = code;
  }

  /** True for an engine error, also one made by another copy of this package. */
  static isInstance(error: unknown): error is PagodaEngineError {
    return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[marker] === true;
  }
}

/** A checkpoint's config.json is missing, malformed or describes an architecture Pagoda does not run. */
export class ModelConfigError extends PagodaEngineError {
  readonly file: string;
  readonly field: string | undefined;

  constructor(file: string, message: string, options?: { field?: string; cause?: unknown }) {
    super('model_config_invalid', `${file}: ${message}`, options);
    this.name = 'ModelConfigError';
    this.file = file;
    this.field = options?.field;
  }
}

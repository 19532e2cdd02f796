const marker = Symbol.for('pagoda.kv-cache.error');

/** The base of every error @pagoda/kv-cache throws. `code` is stable; match on it, not on the message. */
export class KvCacheError extends Error {
  readonly [marker] = true;
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KvCacheError';
    this.code = code;
  }

  /** True for a kv-cache error, also one made by another copy of this package. */
  static isInstance(error: unknown): error is KvCacheError {
    return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[marker] === true;
  }
}

/** The memory budget cannot hold the KV cache the configuration asks for. */
export class KvCacheCapacityError extends KvCacheError {
  constructor(
    message: string,
    /** Bytes the configuration needs (e.g. one max_model_len request's blocks). */
    readonly neededBytes: number,
    /** Bytes the budget leaves for the KV cache. */
    readonly availableBytes: number,
  ) {
    super('kv_cache_capacity', message);
    this.name = 'KvCacheCapacityError';
  }
}

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

/** Why a checkpoint's weights could not be used; the `code` of a {@link CheckpointError}. */
export type CheckpointErrorCode =
  | 'checkpoint_file_missing'
  | 'checkpoint_file_invalid'
  | 'checkpoint_file_truncated'
  | 'checkpoint_tensor_missing'
  | 'checkpoint_tensor_shape'
  | 'checkpoint_tensor_dtype';

/** A safetensors file or one of its tensors is missing, malformed or does not fit the config. */
export class CheckpointError extends PagodaEngineError {
  declare readonly code: CheckpointErrorCode;
  readonly file: string;
  readonly tensor: string | undefined;
  readonly expectedShape: readonly number[] | undefined;
  readonly actualShape: readonly number[] | undefined;

  constructor(
    code: CheckpointErrorCode,
    file: string,
    message: string,
    options?: { tensor?: string; expectedShape?: readonly number[]; actualShape?: readonly number[]; cause?: unknown },
  ) {
    const subject = options?.tensor === undefined ? file : `${file}: tensor ${options.tensor}`;
    super(code, `${subject}: ${message}`, options);
    this.name = 'CheckpointError';
    this.file = file;
    this.tensor = options?.tensor;
    this.expectedShape = options?.expectedShape;
    this.actualShape = options?.actualShape;
  }
}

/** The batch handed to the model runner breaks its contract (a block table too short, a position out of order). */
export class ModelInputError extends PagodaEngineError {
  readonly requestIndex: number | undefined;

  constructor(message: string, options?: { requestIndex?: number }) {
    super('model_input_invalid', message);
    this.name = 'ModelInputError';
    this.requestIndex = options?.requestIndex;
  }
}

/** The requested ONNX Runtime execution provider cannot run here; the message says why and what to do. */
export class ExecutionProviderError extends PagodaEngineError {
  readonly executionProvider: string;

  constructor(executionProvider: string, message: string, options?: { cause?: unknown }) {
    super('execution_provider_unavailable', message, options);
    this.name = 'ExecutionProviderError';
    this.executionProvider = executionProvider;
  }
}

/**
 * A request's structured-output constraint that the grammar backend refuses (a schema it does not support, an EBNF
 * or regex that does not parse). `param` names the field as the API does (`structured_outputs.json`), so a server
 * answers 400 for it.
 */
export class StructuredOutputError extends PagodaEngineError {
  readonly param: string;

  constructor(message: string, options: { kind: string; cause?: unknown }) {
    super('invalid_structured_outputs', message, options);
    this.name = 'StructuredOutputError';
    this.param = `structured_outputs.${options.kind.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)}`;
  }
}

/** Why a GGUF file could not be used; the `code` of a {@link GgufError}. */
export type GgufErrorCode =
  | 'gguf_file_unreadable'
  | 'gguf_file_invalid'
  | 'gguf_file_truncated'
  | 'gguf_metadata_invalid'
  | 'gguf_architecture_unsupported'
  | 'gguf_tensor_missing'
  | 'gguf_tensor_type_unsupported'
  | 'gguf_tensor_shape';

/**
 * A GGUF file is unreadable, malformed, truncated, or holds a model or tensor type Pagoda does not run. `key` names
 * the metadata key and `tensor` the tensor (its GGUF name) where the problem is.
 */
export class GgufError extends PagodaEngineError {
  declare readonly code: GgufErrorCode;
  readonly file: string;
  readonly key: string | undefined;
  readonly tensor: string | undefined;
  readonly expectedShape: readonly number[] | undefined;
  readonly actualShape: readonly number[] | undefined;

  constructor(
    code: GgufErrorCode,
    file: string,
    message: string,
    options?: { key?: string; tensor?: string; expectedShape?: readonly number[]; actualShape?: readonly number[]; cause?: unknown },
  ) {
    const subject = options?.tensor !== undefined ? `${file}: tensor ${options.tensor}` : options?.key !== undefined ? `${file}: key ${options.key}` : file;
    super(code, `${subject}: ${message}`, options);
    this.name = 'GgufError';
    this.file = file;
    this.key = options?.key;
    this.tensor = options?.tensor;
    this.expectedShape = options?.expectedShape;
    this.actualShape = options?.actualShape;
  }
}

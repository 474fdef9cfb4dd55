/**
 * Every error the package raises on purpose is an LmiError with a stable `code`,
 * so callers can branch on `err.code` (or `instanceof`) instead of parsing messages.
 */
export type LmiErrorCode =
  | 'INVALID_ARGUMENT'
  | 'GGUF_FORMAT'
  | 'UNSUPPORTED'
  | 'TOKENIZER'
  | 'NATIVE_BUILD'
  | 'NATIVE'
  | 'DISPOSED'
  | 'ABORTED';

export class LmiError extends Error {
  readonly code: LmiErrorCode;
  constructor(code: LmiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An argument or option is missing, of the wrong type, or out of range. */
export class InvalidArgumentError extends LmiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', message, options);
  }
}

/** A GGUF file is malformed, truncated or hostile. */
export class GgufFormatError extends LmiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GGUF_FORMAT', message, options);
  }
}

/** A well-formed input asks for something this package does not implement (architecture, tensor type, tokenizer). */
export class UnsupportedError extends LmiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNSUPPORTED', message, options);
  }
}

/** The tokenizer metadata is inconsistent, or text cannot be tokenized. */
export class TokenizerError extends LmiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TOKENIZER', message, options);
  }
}

/** The native addon could not be built or loaded. */
export class NativeBuildError extends LmiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NATIVE_BUILD', message, options);
  }
}

/** The native code reported a failure while computing. */
export class NativeError extends LmiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NATIVE', message, options);
  }
}

/** A session or model was used after dispose(). */
export class DisposedError extends LmiError {
  /** `what` names the object ("session", "model"); `options.message` replaces the whole message. */
  constructor(what: string, options?: { message?: string; cause?: unknown }) {
    super('DISPOSED', options?.message ?? `${what} has been disposed and cannot be used any more`, options);
  }
}

/** An operation was cancelled through its AbortSignal. */
export class AbortError extends LmiError {
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super('ABORTED', message, options);
  }
}

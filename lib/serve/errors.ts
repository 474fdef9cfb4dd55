/**
 * HTTP errors with OpenAI-style bodies: `{ error: { message, type, param, code } }`. Everything the
 * server refuses on purpose is an HttpError; anything else is a 500 with a generic message.
 */

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null,
    readonly param: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400: a request the server understands but will not run as given. */
export function invalidRequest(message: string, param: string | null = null, code: string | null = 'invalid_value'): HttpError {
  return new HttpError(400, message, 'invalid_request_error', code, param);
}

export function notFound(message: string, code: string, param: string | null = null): HttpError {
  return new HttpError(404, message, 'invalid_request_error', code, param);
}

/** 429 (too many sessions) or 503 (out of K/V memory, shutting down): try again later. */
export function overloaded(status: 429 | 503, message: string, code: string, retryAfterSeconds: number): HttpError {
  const type = status === 429 ? 'rate_limit_error' : 'server_error';
  return new HttpError(status, message, type, code, null, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))) });
}

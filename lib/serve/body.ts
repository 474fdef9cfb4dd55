/**
 * Request bodies: a size limit (413), strict UTF-8 (400 invalid_utf8) and JSON (400 invalid_json).
 * A body over the limit is read to its end and thrown away (up to DISCARD_FACTOR times the limit,
 * then the connection is dropped), so the client gets its 413 instead of a reset connection.
 */
import type { IncomingMessage } from 'http';

import { HttpError, invalidRequest } from './errors';

const DISCARD_FACTOR = 16;

function tooLarge(limit: number): HttpError {
  return new HttpError(413, `request body is larger than the server's limit of ${limit} bytes`, 'invalid_request_error', 'body_too_large');
}

/** The raw body, at most `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = Number.isFinite(declared) && declared > limit;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      if (!over) chunks.push(chunk);
      else if (size > limit * DISCARD_FACTOR) {
        cleanup();
        req.socket.destroy(); // not worth reading: drop the connection
        reject(tooLarge(limit));
      }
    };
    const onEnd = () => {
      cleanup();
      if (over) reject(tooLarge(limit));
      else resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      if (!req.complete) {
        cleanup();
        reject(new Error('the client closed the connection while sending the body'));
      }
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The body as JSON, UTF-8 and syntax checked. The content type is not insisted on (curl -d sends
 * form-urlencoded), except that multipart bodies are refused (415).
 */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = String(req.headers['content-type'] ?? '').toLowerCase();
  if (type.startsWith('multipart/'))
    throw new HttpError(415, `content type ${JSON.stringify(type)} is not supported; send a JSON body (application/json)`, 'invalid_request_error', 'unsupported_media_type');
  const raw = await readBody(req, limit);
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw invalidRequest('the request body is not valid UTF-8', null, 'invalid_utf8');
  }
  if (text.trim() === '') throw invalidRequest('the request body is empty; send a JSON object', null, 'invalid_json');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidRequest(`the request body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json');
  }
}

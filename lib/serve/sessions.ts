/**
 * The server's sessions: persistent ones, named by the client (`session_id` / X-Session-Id), whose
 * ring-buffer cache carries a conversation from request to request, and one-off ones for
 * requests that name none. Both hold K/V memory, so both count against the limits:
 *
 *   maxSessions   sessions alive at once          → 429 too_many_sessions (Retry-After: the
 *                                                    earliest an idle session expires)
 *   maxKvBytes    their K/V memory together       → 503 kv_memory_exhausted
 *   ttlMs         a persistent session idle longer is disposed; naming it again → 410
 *                 session_expired (DELETE /v1/sessions/<id> frees the name for a new session)
 *
 * A session serves one request at a time; a second request for a busy session → 409 session_busy.
 */
import type { Model } from '../model';
import type { Session, SessionOptions } from '../session';
import type { ChatConversation } from './chat-template';
import { HttpError, overloaded } from './errors';

export interface SessionStoreOptions {
  maxSessions: number;
  maxKvBytes: number;
  ttlMs: number;
  /** What every session is created with (evaluator included). */
  sessionOptions: SessionOptions;
  /** Expired ids remembered (for 410 answers). Default 10000. */
  maxTombstones?: number;
  now?: () => number;
}

export interface ServedSession {
  /** null: a one-off session for one request. */
  readonly id: string | null;
  readonly session: Session;
  readonly kvBytes: number;
  readonly createdAt: number;
  lastUsed: number;
  busy: boolean;
  /** What the session streams: fixed by its first request. */
  kind: 'completion' | 'chat';
  /** Chat sessions: the conversation so far. */
  chat: ChatConversation | null;
  requests: number;
  /** A native failure left its K/V unknown: disposed when released. */
  broken?: boolean;
}

export class SessionStore {
  private readonly named = new Map<string, ServedSession>();
  private readonly oneOff = new Set<ServedSession>();
  private readonly tombstones = new Map<string, number>();
  private kvUsed = 0;
  private perSessionKv: number | null = null;
  private closed = false;
  private readonly now: () => number;
  /** Called when a session expires (metrics). */
  onExpire: ((s: ServedSession) => void) | null = null;

  constructor(private readonly model: Model, readonly options: SessionStoreOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Sessions alive (persistent and one-off). */
  get size(): number {
    return this.named.size + this.oneOff.size;
  }

  get persistentCount(): number {
    return this.named.size;
  }

  get busyCount(): number {
    let n = this.oneOff.size;
    for (const s of this.named.values()) if (s.busy) n++;
    return n;
  }

  /** K/V bytes held by all sessions. */
  get kvBytes(): number {
    return this.kvUsed;
  }

  /** K/V bytes one session takes (the same for all: they share the options). */
  sessionKvBytes(): number {
    if (this.perSessionKv === null) {
      const probe = this.model.createSession(this.options.sessionOptions);
      this.perSessionKv = probe.kvBytes;
      probe.dispose();
    }
    return this.perSessionKv;
  }

  has(id: string): boolean {
    return this.named.has(id);
  }

  info(id: string): ServedSession | undefined {
    this.sweep();
    return this.named.get(id);
  }

  /**
   * The session for a request, marked busy: the named one (created on first use), or a new
   * one-off session. Throws HttpError 409 / 410 / 429 / 503 / 400 (kind mismatch).
   */
  acquire(id: string | null, kind: 'completion' | 'chat'): ServedSession {
    if (this.closed) throw overloaded(503, 'the server is shutting down', 'shutting_down', 5);
    this.sweep();
    if (id !== null) {
      const s = this.named.get(id);
      if (s !== undefined) {
        if (s.busy) throw new HttpError(409, `session ${JSON.stringify(id)} is busy with another request; wait for it to finish`, 'invalid_request_error', 'session_busy', 'session_id');
        if (s.kind !== kind)
          throw new HttpError(400, `session ${JSON.stringify(id)} is a ${s.kind} session; it cannot continue with a ${kind} request`, 'invalid_request_error', 'session_kind_mismatch', 'session_id');
        s.busy = true;
        s.requests++;
        return s;
      }
      if (this.tombstones.has(id))
        throw new HttpError(410, `session ${JSON.stringify(id)} expired after ${this.options.ttlMs / 1000} s idle and its context is gone; ` +
          `start a new session (a new id) and send the conversation again, or DELETE /v1/sessions/${id} to reuse the id`, 'invalid_request_error', 'session_expired', 'session_id');
    }
    const kv = this.sessionKvBytes();
    if (this.size >= this.options.maxSessions)
      throw overloaded(429, `the server holds its limit of ${this.options.maxSessions} sessions; retry later or end a session (DELETE /v1/sessions/<id>)`, 'too_many_sessions', this.retryAfterSeconds());
    if (this.kvUsed + kv > this.options.maxKvBytes)
      throw overloaded(503, `K/V memory is exhausted: ${this.kvUsed} of ${this.options.maxKvBytes} bytes in use and a session needs ${kv}; retry later`, 'kv_memory_exhausted', this.retryAfterSeconds());
    const session = this.model.createSession(this.options.sessionOptions);
    const now = this.now();
    const served: ServedSession = { id, session, kvBytes: session.kvBytes, createdAt: now, lastUsed: now, busy: true, kind, chat: null, requests: 1 };
    this.kvUsed += served.kvBytes;
    if (id !== null) this.named.set(id, served);
    else this.oneOff.add(served);
    return served;
  }

  /** The request is done with the session: one-off sessions are disposed, persistent ones wait for the next request. */
  release(s: ServedSession): void {
    s.busy = false;
    s.lastUsed = this.now();
    if (s.id === null || this.closed || s.broken || s.session.disposed) this.drop(s);
  }

  /** Ends a persistent session now (or forgets an expired id). False when the id is unknown. Throws 409 while busy. */
  delete(id: string): boolean {
    const s = this.named.get(id);
    if (s === undefined) return this.tombstones.delete(id);
    if (s.busy) throw new HttpError(409, `session ${JSON.stringify(id)} is busy with a request`, 'invalid_request_error', 'session_busy', 'session_id');
    this.drop(s);
    return true;
  }

  /** Disposes persistent sessions idle for longer than the TTL; returns how many. */
  sweep(): number {
    const now = this.now();
    let n = 0;
    for (const s of [...this.named.values()]) {
      if (s.busy || now - s.lastUsed <= this.options.ttlMs) continue;
      this.drop(s);
      this.tombstone(s.id!);
      this.onExpire?.(s);
      n++;
    }
    return n;
  }

  /** Disposes every idle session; busy ones go when their request releases them. */
  close(): void {
    this.closed = true;
    for (const s of [...this.named.values(), ...this.oneOff]) if (!s.busy) this.drop(s);
  }

  /** Seconds until an idle session expires (the TTL when every session is busy). */
  private retryAfterSeconds(): number {
    const now = this.now();
    let best = this.options.ttlMs;
    for (const s of this.named.values()) if (!s.busy) best = Math.min(best, s.lastUsed + this.options.ttlMs - now);
    return Math.max(1, best / 1000);
  }

  private drop(s: ServedSession): void {
    const known = s.id === null ? this.oneOff.delete(s) : this.named.get(s.id) === s && this.named.delete(s.id);
    if (known) this.kvUsed -= s.kvBytes;
    s.session.dispose();
  }

  private tombstone(id: string): void {
    this.tombstones.set(id, this.now());
    const max = this.options.maxTombstones ?? 10000;
    while (this.tombstones.size > max) this.tombstones.delete(this.tombstones.keys().next().value as string);
  }
}

/**
 * The HTTP request handler: OpenAI-compatible completions and chat completions (streaming SSE and
 * not), models, health, Prometheus metrics, and persistent sessions. A plain
 * `(req, res, next?) => void` over node:http objects, so it serves as
 *
 *   http.createServer(handler)                         // node:http
 *   app.use(handler)                                   // Express: unknown paths go to next()
 *   fastify.all('/*', (req, reply) => { reply.hijack(); handler(req.raw, reply.raw); })
 *                                                      // Fastify: see README for the body parser
 *
 * A body already parsed by a framework (`req.body`, stream consumed) is used as is.
 */
import { randomUUID } from 'crypto';
import type { IncomingMessage, ServerResponse } from 'http';
import * as path from 'path';

import { AbortError, InvalidArgumentError, LmiError, NativeError } from '../errors';
import type { Model } from '../model';
import type { GenerateOptions, Session, SessionOptions } from '../session';
import { readJson } from './body';
import { type ChatTemplate, ChatConversation, loadChatTemplate } from './chat-template';
import { HttpError, invalidRequest, notFound } from './errors';
import { LATENCY_BUCKETS, Registry } from './metrics';
import { type ChatRequest, type CompletionRequest, type ParamLimits, parseChatRequest, parseCompletionRequest } from './params';
import { BatchScheduler } from './scheduler';
import { type ServedSession, SessionStore } from './sessions';

export interface ServeOptions {
  /** The loaded model to serve (the handler does not dispose it). */
  model: Model;
  /** The id clients name in `model` and /v1/models lists. Default: general.name, else the file name. */
  modelId?: string;
  /** Attention, K/V type and prefill chunk of every session (threads and evaluator are the server's). Default: Λ with the model's defaults, f16, chunkSize 128. */
  session?: Omit<SessionOptions, 'threads' | 'evaluator'>;
  /** A persistent session idle this long is disposed. Default 600000 (10 min). */
  sessionTtlMs?: number;
  /** Sessions alive at once, persistent and one-off (429 beyond). Default 64. */
  maxSessions?: number;
  /** K/V memory of all sessions together (503 beyond). Default: no limit. */
  maxKvBytes?: number;
  /** Request body limit (413 beyond). Default 4 MiB. */
  maxBodyBytes?: number;
  /** Largest max_tokens a request may ask for. Default 4096. */
  maxTokensLimit?: number;
  /** Largest prompt (tokens appended by one request). Default 16384. */
  maxPromptTokens?: number;
  /** A request running longer is stopped (504, or an error event when streaming). 0: none. Default 600000. */
  requestTimeoutMs?: number;
  /** Continuous batching of all sessions' steps into one forward pass. Default true. */
  batching?: boolean;
  /** Most tokens per batched forward pass. Default 512. */
  maxBatchTokens?: number;
  /** A Jinja chat template to use instead of the GGUF's; null: the fallback template. */
  chatTemplate?: string | null;
}

export interface ServeHandler {
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  readonly modelId: string;
  readonly sessions: SessionStore;
  readonly scheduler: BatchScheduler;
  /** The /metrics text. */
  metricsText(): string;
  /** Refuses new requests (503), stops running ones, disposes the sessions once they are idle. */
  close(): Promise<void>;
}

type Route = 'completions' | 'chat' | 'models' | 'model' | 'health' | 'metrics' | 'session';
const ROUTE_LABEL: Record<Route, string> = {
  completions: '/v1/completions',
  chat: '/v1/chat/completions',
  models: '/v1/models',
  model: '/v1/models/{id}',
  health: '/health',
  metrics: '/metrics',
  session: '/v1/sessions/{id}',
};
const METHODS: Record<Route, string[]> = {
  completions: ['POST'],
  chat: ['POST'],
  models: ['GET'],
  model: ['GET'],
  health: ['GET'],
  metrics: ['GET'],
  session: ['GET', 'DELETE'],
};

function routeOf(pathname: string): { route: Route; param?: string } | null {
  const p = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  if (p === '/v1/completions' || p === '/completions') return { route: 'completions' };
  if (p === '/v1/chat/completions' || p === '/chat/completions') return { route: 'chat' };
  if (p === '/v1/models' || p === '/models') return { route: 'models' };
  if (p === '/health' || p === '/healthz') return { route: 'health' };
  if (p === '/metrics') return { route: 'metrics' };
  let m = /^\/v1\/models\/([^/]+)$/.exec(p);
  if (m) return { route: 'model', param: decodeURIComponent(m[1]) };
  m = /^\/v1\/sessions\/([^/]+)$/.exec(p);
  if (m) return { route: 'session', param: decodeURIComponent(m[1]) };
  return null;
}

/** Why a request's AbortController fired. */
type StopReason = 'timeout' | 'disconnect' | 'shutdown';

function positive(value: number | undefined, name: string, fallback: number, allowZero = false, allowInfinity = false): number {
  if (value === undefined) return fallback;
  const ok = typeof value === 'number' && (allowInfinity && value === Infinity ? true : Number.isSafeInteger(value)) && (allowZero ? value >= 0 : value > 0);
  if (!ok) throw new InvalidArgumentError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer${allowInfinity ? ' or Infinity' : ''}, got ${String(value)}`);
  return value;
}

/** Each model gets one scheduler, shared by every handler that serves it (evalMany runs one pass at a time per model). */
const schedulers = new WeakMap<Model, BatchScheduler>();

export function createHandler(options: ServeOptions): ServeHandler {
  if (options === null || typeof options !== 'object' || options.model === undefined) throw new InvalidArgumentError('createHandler needs { model }');
  const model = options.model;
  if (model.disposed) throw new InvalidArgumentError('createHandler: the model is disposed');
  const modelId = options.modelId ?? model.info.name ?? path.basename(model.info.path).replace(/\.gguf$/i, '');
  const ttlMs = positive(options.sessionTtlMs, 'sessionTtlMs', 600_000);
  const maxSessions = positive(options.maxSessions, 'maxSessions', 64);
  const maxKvBytes = positive(options.maxKvBytes, 'maxKvBytes', Infinity, false, true);
  const maxBodyBytes = positive(options.maxBodyBytes, 'maxBodyBytes', 4 << 20);
  const maxTokensLimit = positive(options.maxTokensLimit, 'maxTokensLimit', 4096);
  const maxPromptTokens = positive(options.maxPromptTokens, 'maxPromptTokens', 16384);
  const requestTimeoutMs = positive(options.requestTimeoutMs, 'requestTimeoutMs', 600_000, true);
  const batching = options.batching ?? true;
  let scheduler = schedulers.get(model);
  if (scheduler === undefined) {
    scheduler = new BatchScheduler({ maxBatchTokens: positive(options.maxBatchTokens, 'maxBatchTokens', 512) });
    schedulers.set(model, scheduler);
  }
  const sessionOptions: SessionOptions = {
    chunkSize: 128,
    ...options.session,
    ...(batching ? { threads: 1, evaluator: scheduler } : {}),
  };
  const store = new SessionStore(model, { maxSessions, maxKvBytes, ttlMs, sessionOptions });
  store.sessionKvBytes(); // checks the session options now, not at the first request
  const limits: ParamLimits = {
    modelId,
    maxTokensLimit,
    defaultCompletionTokens: Math.min(16, maxTokensLimit),
    defaultChatTokens: maxTokensLimit,
    nVocab: model.info.nVocab,
  };
  const tokenizer = model.tokenizer;
  const created = Math.floor(Date.now() / 1000);
  let template: Promise<ChatTemplate> | null = null;
  const chatTemplate = () => (template ??= loadChatTemplate(model.info.path, tokenizer, options.chatTemplate));

  // ----- metrics -----
  const reg = new Registry();
  const requests = reg.counter('lmi_http_requests_total', 'HTTP requests by route, method and status (499: the client went away).');
  const duration = reg.histogram('lmi_http_request_duration_seconds', 'Time from request to the end of the response, by route.', LATENCY_BUCKETS);
  const ttft = reg.histogram('lmi_time_to_first_token_seconds', 'Time from request to the first generated token.', LATENCY_BUCKETS);
  const promptTokens = reg.counter('lmi_prompt_tokens_total', 'Prompt tokens appended to sessions.');
  const generated = reg.counter('lmi_generated_tokens_total', 'Tokens generated.');
  const cancelled = reg.counter('lmi_requests_cancelled_total', 'Generations stopped early, by reason (disconnect, timeout, shutdown).');
  const expired = reg.counter('lmi_sessions_expired_total', 'Persistent sessions disposed after their TTL.');
  reg.gauge('lmi_sessions_active', 'Sessions alive (persistent and one-off).', () => store.size);
  reg.gauge('lmi_sessions_persistent', 'Persistent sessions alive.', () => store.persistentCount);
  reg.gauge('lmi_sessions_busy', 'Sessions serving a request now.', () => store.busyCount);
  reg.gauge('lmi_sessions_limit', 'Most sessions alive at once.', () => maxSessions);
  reg.gauge('lmi_kv_bytes', 'K/V memory held by all sessions.', () => store.kvBytes);
  reg.gauge('lmi_kv_bytes_limit', 'K/V memory limit (+Inf: none).', () => maxKvBytes);
  reg.gauge('lmi_scheduler_queue_depth', 'Evals waiting for the next batched forward pass.', () => scheduler!.queueDepth);
  reg.gauge('lmi_batch_steps_total', 'Batched forward passes run (all handlers of this model).', () => scheduler!.steps);
  reg.gauge('lmi_batch_tokens_total', 'Tokens evaluated in batched forward passes (all handlers of this model).', () => scheduler!.tokens);
  const batchSeqs = reg.histogram('lmi_batch_sequences', 'Sequences per batched forward pass.', [1, 2, 4, 8, 16, 32, 64, 128, 256]);
  reg.gauge('process_resident_memory_bytes', 'Resident memory of the server process.', () => process.memoryUsage.rss());
  reg.gauge('nodejs_heap_used_bytes', 'V8 heap in use.', () => process.memoryUsage().heapUsed);
  const stopListening = scheduler.onStep((info) => batchSeqs.observe(info.sequences));
  store.onExpire = () => expired.inc();

  // ----- lifecycle -----
  const running = new Map<AbortController, Promise<void>>();
  let closing = false;
  const sweeper = setInterval(() => store.sweep(), Math.max(100, Math.min(30_000, Math.floor(ttlMs / 4))));
  sweeper.unref();

  // ----- responses -----
  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent) return;
    const data = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(data), ...headers });
    res.end(data);
  }

  /** An error as an HTTP status and OpenAI error body. */
  function toHttpError(err: unknown): HttpError {
    if (err instanceof HttpError) return err;
    if (err instanceof InvalidArgumentError) return invalidRequest(err.message, null, 'invalid_value');
    if (err instanceof LmiError) return new HttpError(500, `${err.code}: ${err.message}`, 'server_error', err.code.toLowerCase());
    return new HttpError(500, `internal error: ${(err as Error)?.message ?? String(err)}`, 'server_error', 'internal_error');
  }

  function fail(res: ServerResponse, err: unknown): void {
    const e = toHttpError(err);
    if (!res.headersSent) sendJson(res, e.status, e.body(), { ...e.headers });
    else if (!res.writableEnded && !res.destroyed) {
      res.write(`data: ${JSON.stringify(e.body())}\n\n`);
      res.end('data: [DONE]\n\n');
    }
  }

  function sseStart(res: ServerResponse, extra: Record<string, string>): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
      ...extra,
    });
    res.socket?.setNoDelay(true);
  }

  /** Writes one SSE event; waits for the socket to drain when its buffer is full. */
  async function sse(res: ServerResponse, data: unknown): Promise<void> {
    if (res.writableEnded || res.destroyed) return;
    if (!res.write(`data: ${JSON.stringify(data)}\n\n`))
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
  }

  // ----- generation -----
  async function generate(req: IncomingMessage, res: ServerResponse, r: CompletionRequest | ChatRequest, started: bigint): Promise<void> {
    const ctl = new AbortController();
    const stop = (reason: StopReason) => {
      if (!ctl.signal.aborted) ctl.abort(reason);
    };
    const onClose = () => {
      if (!res.writableFinished) stop('disconnect');
    };
    res.on('close', onClose);
    const timer = requestTimeoutMs > 0 ? setTimeout(() => stop('timeout'), requestTimeoutMs) : null;
    const work = (async () => {
      const tmpl = r.kind === 'chat' ? await chatTemplate() : null;
      if (ctl.signal.aborted) throw new AbortError();
      const served = store.acquire(r.sessionId, r.kind);
      try {
        await run(res, r, served, tmpl, ctl.signal, started);
      } catch (err) {
        // A native failure leaves the session's K/V unknown: it goes when released.
        if (err instanceof NativeError) served.broken = true;
        throw err;
      } finally {
        store.release(served);
      }
    })();
    running.set(ctl, work.catch(() => undefined));
    try {
      await work;
    } catch (err) {
      const reason = ctl.signal.aborted ? (ctl.signal.reason as StopReason) : null;
      if (reason !== null && (err instanceof AbortError || (err as Error)?.name === 'AbortError')) {
        cancelled.inc({ reason });
        if (reason === 'timeout') fail(res, new HttpError(504, `the request ran past the server's limit of ${requestTimeoutMs} ms`, 'timeout_error', 'request_timeout'));
        else if (reason === 'shutdown') fail(res, new HttpError(503, 'the server is shutting down', 'server_error', 'shutting_down'));
        // disconnect: nobody to answer
      } else throw err;
    } finally {
      if (timer) clearTimeout(timer);
      res.off('close', onClose);
      running.delete(ctl);
    }
  }

  async function run(res: ServerResponse, r: CompletionRequest | ChatRequest, served: ServedSession, tmpl: ChatTemplate | null, signal: AbortSignal, started: bigint): Promise<void> {
    const session = served.session;
    const fresh = session.tokenCount === 0;
    const bosText = tokenizer.bos !== null ? tokenizer.tokenText(tokenizer.bos) : '';
    let ids: number[];
    let commit: (() => void) | null = null;
    if (r.kind === 'chat') {
      served.chat ??= new ChatConversation();
      const p = served.chat.prepare(tmpl!, r.messages);
      // Session streams start with BOS when the tokenizer says so; do not double a template's.
      const text = fresh && tokenizer.addBos && bosText !== '' && p.text.startsWith(bosText) ? p.text.slice(bosText.length) : p.text;
      ids = Array.from(session.tokenize(text, { parseSpecial: true }));
      commit = p.commit;
    } else {
      // Text is tokenized as Session.append(text) would: BOS on a fresh stream, and a continuation
      // of the session's stream after that; token ids go in as given.
      ids = typeof r.prompt === 'string' ? Array.from(session.tokenize(r.prompt)) : [...r.prompt];
    }
    if (ids.length > maxPromptTokens)
      throw invalidRequest(
        `the prompt is ${ids.length} tokens; this server takes at most ${maxPromptTokens} per request (a persistent session keeps earlier turns, so send only the new part)`,
        r.kind === 'chat' ? 'messages' : 'prompt',
        'context_length_exceeded',
      );

    const id = `${r.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
    const createdAt = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = served.id !== null ? { 'X-Session-Id': served.id } : {};
    commit?.();
    if (ids.length > 0) {
      await session.append(ids, { signal });
      promptTokens.inc({}, ids.length);
    }
    const gen: GenerateOptions = { ...r.generate, stop: [...r.generate.stop, ...(tmpl?.stop ?? [])], signal };
    const before = session.tokenCount;
    const object = r.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const chunk = (delta: string | null, finish: string | null) =>
      r.kind === 'chat'
        ? { id, object, created: createdAt, model: modelId, choices: [{ index: 0, delta: delta === null ? {} : { content: delta }, logprobs: null, finish_reason: finish }] }
        : { id, object, created: createdAt, model: modelId, choices: [{ index: 0, text: delta ?? '', logprobs: null, finish_reason: finish }] };

    let text = '';
    let finish: 'stop' | 'length' = 'stop';
    let first = true;
    const it = session.generate(gen);
    try {
      if (r.stream) {
        sseStart(res, headers);
        if (r.kind === 'chat') await sse(res, { id, object, created: createdAt, model: modelId, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
      }
      for (;;) {
        const step = await it.next();
        if (step.done) {
          finish = step.value.reason === 'maxTokens' ? 'length' : 'stop';
          break;
        }
        if (first) {
          ttft.observe(Number(process.hrtime.bigint() - started) / 1e9);
          first = false;
        }
        text += step.value.text;
        if (r.stream && step.value.text !== '') await sse(res, chunk(step.value.text, null));
      }
    } finally {
      const n = session.tokenCount - before;
      generated.inc({}, n);
      if (served.chat !== null) served.chat.reply(text);
      await it.return(undefined as never).catch(() => undefined);
    }
    const completionTokens = session.tokenCount - before;
    const usage = { prompt_tokens: ids.length, completion_tokens: completionTokens, total_tokens: ids.length + completionTokens };
    if (r.stream) {
      await sse(res, chunk(null, finish));
      if (r.includeUsage) await sse(res, { id, object, created: createdAt, model: modelId, choices: [], usage });
      if (!res.writableEnded) res.end('data: [DONE]\n\n');
      return;
    }
    const choice = r.kind === 'chat'
      ? { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finish }
      : { index: 0, text, logprobs: null, finish_reason: finish };
    sendJson(
      res,
      200,
      { id, object: r.kind === 'chat' ? 'chat.completion' : 'text_completion', created: createdAt, model: modelId, choices: [choice], usage, ...(served.id !== null ? { session_id: served.id } : {}) },
      headers,
    );
  }

  // ----- other routes -----
  function modelCard() {
    return {
      id: modelId,
      object: 'model',
      created,
      owned_by: 'lm-infinite',
      arch: model.info.arch,
      context_length: model.info.contextLength,
      n_vocab: model.info.nVocab,
    };
  }

  function sessionCard(s: ServedSession) {
    const sess: Session = s.session;
    return {
      id: s.id,
      object: 'session',
      kind: s.kind,
      tokens: sess.tokenCount,
      position: sess.position,
      kv_bytes: s.kvBytes,
      requests: s.requests,
      busy: s.busy,
      created: Math.floor(s.createdAt / 1000),
      last_used: Math.floor(s.lastUsed / 1000),
      expires_at: Math.floor((s.lastUsed + ttlMs) / 1000),
    };
  }

  async function dispatch(req: IncomingMessage, res: ServerResponse, route: Route, param: string | undefined, started: bigint): Promise<void> {
    const method = req.method ?? 'GET';
    if (!METHODS[route].includes(method) && !(method === 'HEAD' && METHODS[route].includes('GET'))) {
      throw new HttpError(405, `${method} is not allowed on ${ROUTE_LABEL[route]}; use ${METHODS[route].join(' or ')}`, 'invalid_request_error', 'method_not_allowed', null, {
        Allow: METHODS[route].join(', '),
      });
    }
    switch (route) {
      case 'health':
        return sendJson(res, closing ? 503 : 200, {
          status: closing ? 'shutting_down' : 'ok',
          model: modelId,
          sessions: store.size,
          kv_bytes: store.kvBytes,
          queue_depth: scheduler!.queueDepth,
        });
      case 'metrics': {
        const text = reg.render();
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      case 'models':
        return sendJson(res, 200, { object: 'list', data: [modelCard()] });
      case 'model':
        if (param !== modelId) throw notFound(`the model ${JSON.stringify(param)} does not exist; this server serves ${JSON.stringify(modelId)}`, 'model_not_found', 'model');
        return sendJson(res, 200, modelCard());
      case 'session': {
        const s = store.info(param!);
        if (method === 'DELETE') {
          if (!store.delete(param!)) throw notFound(`no session ${JSON.stringify(param)}`, 'session_not_found', 'session_id');
          return sendJson(res, 200, { id: param, object: 'session', deleted: true });
        }
        if (s === undefined) throw notFound(`no session ${JSON.stringify(param)}`, 'session_not_found', 'session_id');
        return sendJson(res, 200, sessionCard(s));
      }
      case 'completions':
      case 'chat': {
        if (closing) throw new HttpError(503, 'the server is shutting down', 'server_error', 'shutting_down');
        const pre = (req as IncomingMessage & { body?: unknown }).body;
        const body = pre !== undefined && req.readableEnded ? pre : await readJson(req, maxBodyBytes);
        const header = req.headers['x-session-id'];
        const r = route === 'chat' ? parseChatRequest(body, limits, header) : parseCompletionRequest(body, limits, header);
        return generate(req, res, r, started);
      }
    }
  }

  const handler = ((req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => {
    const started = process.hrtime.bigint();
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      pathname = '/';
    }
    let found: ReturnType<typeof routeOf>;
    try {
      found = routeOf(pathname);
    } catch {
      requests.inc({ route: 'other', method: req.method ?? '', status: '400' });
      return sendJson(res, 400, invalidRequest(`malformed path ${JSON.stringify(pathname.slice(0, 200))}`, null, 'invalid_path').body());
    }
    if (found === null) {
      if (typeof next === 'function') return next();
      requests.inc({ route: 'other', method: req.method ?? '', status: '404' });
      return sendJson(res, 404, notFound(`no route ${req.method} ${pathname}`, 'unknown_route').body());
    }
    const label = ROUTE_LABEL[found.route];
    res.on('close', () => {
      const status = res.writableFinished ? String(res.statusCode) : '499';
      requests.inc({ route: label, method: req.method ?? '', status });
      duration.observe(Number(process.hrtime.bigint() - started) / 1e9, { route: label });
    });
    dispatch(req, res, found.route, found.param, started).catch((err) => {
      try {
        fail(res, err);
      } catch {
        res.destroy();
      }
    });
  }) as ServeHandler;

  Object.defineProperties(handler, {
    modelId: { value: modelId, enumerable: true },
    sessions: { value: store, enumerable: true },
    scheduler: { value: scheduler, enumerable: true },
    metricsText: { value: () => reg.render() },
    close: {
      value: async () => {
        if (closing) return;
        closing = true;
        clearInterval(sweeper);
        stopListening();
        for (const ctl of running.keys()) if (!ctl.signal.aborted) ctl.abort('shutdown' satisfies StopReason);
        await Promise.all(running.values());
        store.close();
      },
    },
  });
  return handler;
}

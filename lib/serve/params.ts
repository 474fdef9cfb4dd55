/**
 * OpenAI request bodies (/v1/completions, /v1/chat/completions) checked and turned into what a
 * session runs. Every refusal is a 400 (404 for an unknown model) naming the parameter. Fields
 * this server does not know are ignored, as OpenAI-compatible servers do; fields it knows but
 * cannot honour (n > 1, echo, logprobs, tools, ...) are refused rather than silently dropped.
 */
import type { GenerateOptions } from '../session';
import { HttpError, invalidRequest, notFound } from './errors';

export interface ParamLimits {
  /** The id /v1/models lists; a request naming another model gets 404. */
  modelId: string;
  /** The largest max_tokens a request may ask for. */
  maxTokensLimit: number;
  /** max_tokens when a completions request gives none (OpenAI's legacy default is 16). */
  defaultCompletionTokens: number;
  /** max_tokens when a chat request gives none. */
  defaultChatTokens: number;
  nVocab: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'developer' | 'tool';
  content: string;
  name?: string;
}

interface CommonRequest {
  stream: boolean;
  includeUsage: boolean;
  /** The persistent session to continue (or start), or null for a one-off request. */
  sessionId: string | null;
  /** What Session.generate gets (signal added by the handler). */
  generate: Omit<GenerateOptions, 'signal'> & { maxTokens: number; stop: string[] };
}

export interface CompletionRequest extends CommonRequest {
  kind: 'completion';
  /** Text, or token ids. */
  prompt: string | number[];
}

export interface ChatRequest extends CommonRequest {
  kind: 'chat';
  messages: ChatMessage[];
}

type Body = Record<string, unknown>;

const SESSION_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const ROLES = new Set(['system', 'user', 'assistant', 'developer', 'tool']);
const MAX_STOP = 4;
const MAX_STOP_LENGTH = 512;
const MAX_MESSAGES = 4096;

function isObject(v: unknown): v is Body {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const present = (v: unknown) => v !== undefined && v !== null;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}` : `${typeof v} ${String(v)}`;
}

function number(body: Body, key: string, min: number, max: number, opts: { integer?: boolean; minExclusive?: boolean } = {}): number | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  const kind = opts.integer ? 'an integer' : 'a number';
  const range = `${opts.minExclusive ? '(' : '['}${min}, ${max}]`;
  if (typeof v !== 'number' || !Number.isFinite(v) || (opts.integer && !Number.isSafeInteger(v)))
    throw invalidRequest(`${key} must be ${kind} in ${range}, got ${describe(v)}`, key, 'invalid_type');
  if (v < min || v > max || (opts.minExclusive && v === min)) throw invalidRequest(`${key} must be ${kind} in ${range}, got ${v}`, key);
  return v;
}

function bool(body: Body, key: string): boolean | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  if (typeof v !== 'boolean') throw invalidRequest(`${key} must be a boolean, got ${describe(v)}`, key, 'invalid_type');
  return v;
}

function unsupported(key: string, what: string): HttpError {
  return invalidRequest(`${key}: ${what} is not supported by this server`, key, 'unsupported_parameter');
}

/** The session id from the body (`session_id` or `session`) and the X-Session-Id header; they must agree. */
export function sessionIdOf(body: Body, header: string | string[] | undefined): string | null {
  const fromBody = present(body.session_id) ? body.session_id : body.session;
  const key = present(body.session_id) ? 'session_id' : 'session';
  if (Array.isArray(header)) throw invalidRequest('X-Session-Id must be given once', 'X-Session-Id');
  for (const [name, v] of [[key, fromBody], ['X-Session-Id', header]] as const)
    if (present(v) && (typeof v !== 'string' || !SESSION_ID.test(v)))
      throw invalidRequest(`${name} must be 1 to 128 characters of A-Z a-z 0-9 _ . : -, got ${describe(v)}`, name);
  if (present(fromBody) && present(header) && fromBody !== header)
    throw invalidRequest(`${key} (${String(fromBody)}) and the X-Session-Id header (${header}) name different sessions`, key);
  return (present(fromBody) ? (fromBody as string) : (header as string | undefined)) ?? null;
}

function common(body: Body, limits: ParamLimits, header: string | string[] | undefined, defaultMax: number, maxKeys: string[]): CommonRequest {
  if (present(body.model)) {
    if (typeof body.model !== 'string') throw invalidRequest(`model must be a string, got ${describe(body.model)}`, 'model', 'invalid_type');
    if (body.model !== limits.modelId)
      throw notFound(`the model ${JSON.stringify(body.model)} does not exist; this server serves ${JSON.stringify(limits.modelId)}`, 'model_not_found', 'model');
  }
  const n = number(body, 'n', 1, Number.MAX_SAFE_INTEGER, { integer: true });
  if (n !== undefined && n !== 1) throw invalidRequest(`n must be 1: this server generates one choice per request, got ${n}`, 'n', 'unsupported_parameter');
  const bestOf = number(body, 'best_of', 1, Number.MAX_SAFE_INTEGER, { integer: true });
  if (bestOf !== undefined && bestOf !== 1) throw invalidRequest(`best_of must be 1, got ${bestOf}`, 'best_of', 'unsupported_parameter');
  if (present(body.logprobs) && body.logprobs !== false && body.logprobs !== 0) throw unsupported('logprobs', 'returning log-probabilities');
  if (present(body.top_logprobs) && body.top_logprobs !== 0) throw unsupported('top_logprobs', 'returning log-probabilities');

  let maxTokens: number | undefined;
  for (const key of maxKeys) {
    const v = number(body, key, 0, limits.maxTokensLimit, { integer: true });
    if (v !== undefined) maxTokens = v;
  }
  const temperature = number(body, 'temperature', 0, 2);
  const topP = number(body, 'top_p', 0, 1, { minExclusive: true });
  const topK = number(body, 'top_k', 0, limits.nVocab, { integer: true });
  const minP = number(body, 'min_p', 0, 1);
  const repeatPenalty = number(body, 'repeat_penalty', 0, 10, { minExclusive: true });
  const presencePenalty = number(body, 'presence_penalty', -2, 2);
  const frequencyPenalty = number(body, 'frequency_penalty', -2, 2);
  const seed = number(body, 'seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, { integer: true });

  let stop: string[] = [];
  if (present(body.stop)) {
    const s = body.stop;
    stop = typeof s === 'string' ? [s] : Array.isArray(s) ? (s as unknown[]).map((x) => x as string) : [];
    if (!(typeof s === 'string' || Array.isArray(s)) || stop.some((x) => typeof x !== 'string'))
      throw invalidRequest(`stop must be a string or an array of strings, got ${describe(s)}`, 'stop', 'invalid_type');
    if (stop.length > MAX_STOP) throw invalidRequest(`stop takes at most ${MAX_STOP} strings, got ${stop.length}`, 'stop');
    if (stop.some((x) => x.length > MAX_STOP_LENGTH)) throw invalidRequest(`each stop string must be at most ${MAX_STOP_LENGTH} characters`, 'stop');
    stop = stop.filter((x) => x.length > 0);
  }

  let logitBias: Record<number, number> | undefined;
  if (present(body.logit_bias)) {
    if (!isObject(body.logit_bias)) throw invalidRequest(`logit_bias must be an object of token id → bias, got ${describe(body.logit_bias)}`, 'logit_bias', 'invalid_type');
    logitBias = {};
    for (const [key, value] of Object.entries(body.logit_bias)) {
      const id = Number(key);
      if (!/^\d+$/.test(key) || id >= limits.nVocab) throw invalidRequest(`logit_bias key ${JSON.stringify(key)} is not a token id in [0, ${limits.nVocab})`, 'logit_bias');
      if (typeof value !== 'number' || !Number.isFinite(value) || value < -100 || value > 100)
        throw invalidRequest(`logit_bias[${key}] must be a number in [-100, 100], got ${describe(value)}`, 'logit_bias');
      logitBias[id] = value;
    }
  }

  const stream = bool(body, 'stream') ?? false;
  let includeUsage = false;
  if (present(body.stream_options)) {
    if (!isObject(body.stream_options)) throw invalidRequest('stream_options must be an object', 'stream_options', 'invalid_type');
    if (!stream) throw invalidRequest('stream_options is only allowed when stream is true', 'stream_options');
    includeUsage = bool(body.stream_options, 'include_usage') ?? false;
  }

  return {
    stream,
    includeUsage,
    sessionId: sessionIdOf(body, header),
    generate: {
      maxTokens: maxTokens ?? defaultMax,
      stop,
      // OpenAI's defaults: temperature 1, top_p 1, no other filter.
      temperature: temperature ?? 1,
      topP: topP ?? 1,
      topK: topK ?? 0,
      minP: minP ?? 0,
      ...(repeatPenalty !== undefined ? { repeatPenalty } : {}),
      presencePenalty: presencePenalty ?? 0,
      frequencyPenalty: frequencyPenalty ?? 0,
      ...(seed !== undefined ? { seed } : {}),
      ...(logitBias !== undefined ? { logitBias } : {}),
    },
  };
}

function requireObject(body: unknown): Body {
  if (!isObject(body)) throw invalidRequest(`the request body must be a JSON object, got ${describe(body)}`, null, 'invalid_type');
  return body;
}

export function parseCompletionRequest(raw: unknown, limits: ParamLimits, sessionHeader?: string | string[]): CompletionRequest {
  const body = requireObject(raw);
  if (present(body.echo) && body.echo !== false) throw unsupported('echo', 'echoing the prompt');
  if (present(body.suffix) && body.suffix !== '') throw unsupported('suffix', 'insertion (suffix)');
  const p = body.prompt;
  let prompt: string | number[];
  const isIds = (a: unknown[]) => a.every((x) => typeof x === 'number');
  if (typeof p === 'string') prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = p[0];
  else if (Array.isArray(p) && p.length > 0 && isIds(p)) prompt = p as number[];
  else if (Array.isArray(p) && p.length === 1 && Array.isArray(p[0]) && isIds(p[0])) prompt = p[0] as number[];
  else if (Array.isArray(p) && p.length > 1 && p.every((x) => typeof x === 'string' || Array.isArray(x)))
    throw invalidRequest(`prompt holds ${p.length} prompts; this server takes one per request`, 'prompt', 'unsupported_parameter');
  else if (!present(p)) throw invalidRequest('prompt is required', 'prompt', 'missing_required_parameter');
  else throw invalidRequest(`prompt must be a string or an array of token ids, got ${describe(p)}`, 'prompt', 'invalid_type');
  if (typeof prompt !== 'string')
    for (const id of prompt)
      if (!Number.isInteger(id) || id < 0 || id >= limits.nVocab) throw invalidRequest(`prompt token ${id} is not a token id in [0, ${limits.nVocab})`, 'prompt');
  return { kind: 'completion', prompt, ...common(body, limits, sessionHeader, limits.defaultCompletionTokens, ['max_tokens']) };
}

export function parseChatRequest(raw: unknown, limits: ParamLimits, sessionHeader?: string | string[]): ChatRequest {
  const body = requireObject(raw);
  for (const key of ['tools', 'functions'])
    if (present(body[key]) && !(Array.isArray(body[key]) && (body[key] as unknown[]).length === 0)) throw unsupported(key, 'tool calling');
  if (present(body.tool_choice) && body.tool_choice !== 'none') throw unsupported('tool_choice', 'tool calling');
  if (present(body.response_format)) {
    const f = body.response_format;
    if (!isObject(f) || f.type !== 'text') throw unsupported('response_format', 'structured output (json_object, json_schema)');
  }
  const m = body.messages;
  if (!present(m)) throw invalidRequest('messages is required', 'messages', 'missing_required_parameter');
  if (!Array.isArray(m)) throw invalidRequest(`messages must be an array, got ${describe(m)}`, 'messages', 'invalid_type');
  if (m.length === 0) throw invalidRequest('messages must hold at least one message', 'messages');
  if (m.length > MAX_MESSAGES) throw invalidRequest(`messages holds ${m.length} messages; at most ${MAX_MESSAGES}`, 'messages');
  const messages: ChatMessage[] = m.map((msg: unknown, k: number) => {
    const where = `messages[${k}]`;
    if (!isObject(msg)) throw invalidRequest(`${where} must be an object { role, content }`, where, 'invalid_type');
    if (typeof msg.role !== 'string' || !ROLES.has(msg.role))
      throw invalidRequest(`${where}.role must be one of ${[...ROLES].join(', ')}, got ${describe(msg.role)}`, `${where}.role`);
    let content: string;
    const c = msg.content;
    if (typeof c === 'string') content = c;
    else if (c === null && msg.role === 'assistant') content = '';
    else if (Array.isArray(c)) {
      content = c
        .map((part: unknown, j: number) => {
          if (!isObject(part) || part.type !== 'text' || typeof part.text !== 'string')
            throw invalidRequest(`${where}.content[${j}]: only { type: 'text', text } parts are supported`, `${where}.content`, 'unsupported_parameter');
          return part.text;
        })
        .join('');
    } else throw invalidRequest(`${where}.content must be a string or an array of text parts, got ${describe(c)}`, `${where}.content`, 'invalid_type');
    const out: ChatMessage = { role: msg.role as ChatMessage['role'], content };
    if (present(msg.name)) {
      if (typeof msg.name !== 'string') throw invalidRequest(`${where}.name must be a string`, `${where}.name`, 'invalid_type');
      out.name = msg.name;
    }
    return out;
  });
  return { kind: 'chat', messages, ...common(body, limits, sessionHeader, limits.defaultChatTokens, ['max_tokens', 'max_completion_tokens']) };
}

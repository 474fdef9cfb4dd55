/** Session, operation and generation options: checks (InvalidArgumentError naming the option) and defaults. */
import { InvalidArgumentError } from '../errors';
import type { KvCacheOptions } from '../cache/kv-cache';
import type { KvCacheType, NativeContext, NativeEvalBatch, NativeModel } from '../native/types';
import { MAX_PENALTY_WINDOW, type ResolvedSamplingOptions, type SamplingOptions, resolveSamplingOptions } from '../sampling/sampler';

export type { KvCacheType } from '../native/types';

/** Every K/V cache type, in the order the CLI lists them. */
export const KV_CACHE_TYPES: readonly KvCacheType[] = ['f16', 'f32', 'q8_0'];

/** The largest chunkSize: tokens per native eval call. */
export const MAX_BATCH = 8192;

export interface TopKAttentionOptions {
  /** Middle keys kept per query, per head. Default 5. */
  k?: number;
  /** First layer that uses top-k middle attention (layers before it use the plain Λ mask). Default 4 (the last layer on smaller models). */
  fromLayer?: number;
  /** Distance the kept middle keys are attended at. Default floor(nLocal / 2). */
  insertAt?: number;
  /**
   * Required: archive slots for keys evicted from the ring (one per token past the ring). Allocated
   * up front, so memory stays fixed; appending past it fails with InvalidArgumentError.
   */
  maxArchive: number;
}

export interface LambdaAttentionOptions {
  /** Pinned slots for the stream's first tokens. Default 10. */
  nGlobal?: number;
  /** Local window. Default: the model's training length. */
  nLocal?: number;
  /** Distance cap of the global branch. Default nLocal. */
  limitDistance?: number;
  /** Top-k middle attention (opt-in). */
  topK?: TopKAttentionOptions;
}

/**
 * Runs a session's native evals on its behalf, e.g. batched with other sessions' into one forward
 * pass (lib/serve's BatchScheduler). It must resolve with exactly what `context.eval(batch)` would.
 */
export interface SessionEvaluator {
  eval(request: { model: NativeModel; context: NativeContext; batch: NativeEvalBatch }): Promise<Float32Array>;
}

export interface SessionOptions {
  /** 'vanilla' (plain causal attention over the whole history) or Λ attention. Default Λ with the defaults above. */
  attention?: 'vanilla' | LambdaAttentionOptions;
  /** K/V storage (see KvCacheType). Default 'f16'. */
  kvType?: KvCacheType;
  /**
   * Tokens per native eval call during prefill and scoring. Default 512, at most MAX_BATCH; Λ
   * attention uses at most nLocal (a chunk is attended, then written over the ring's oldest keys).
   */
  chunkSize?: number;
  /** Vanilla only: slots, so the longest stream. Default the model's training length. */
  maxContext?: number;
  /** Compute threads. Default: the model's. */
  threads?: number;
  /** Who runs this session's evals. Default: the session's own native context, one eval at a time. */
  evaluator?: SessionEvaluator;
}

export interface ResolvedSessionOptions {
  attention:
    | 'vanilla'
    | { nGlobal: number; nLocal: number; limitDistance: number; topK?: { k: number; fromLayer: number; insertAt: number; maxArchive: number } };
  kvType: KvCacheType;
  chunkSize: number;
  maxContext?: number;
  threads: number;
  /** What the KvCache is built from. */
  cache: KvCacheOptions;
  /** NativeContextOptions.topKFromLayer: nLayer when top-k is off. */
  topKFromLayer: number;
  evaluator?: SessionEvaluator;
}

export interface SessionModelFacts {
  contextLength: number;
  nLayer: number;
  defaultThreads: number;
}

function fail(message: string): never {
  throw new InvalidArgumentError(message);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function checkKeys(value: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(value))
    if (!allowed.includes(key)) fail(`unknown option ${what}${key} (known: ${allowed.map((k) => what + k).join(', ')})`);
}

export function intOption(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    fail(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  return value;
}

const INT_MAX = 2 ** 31 - 1;

export function resolveSessionOptions(options: SessionOptions | undefined, model: SessionModelFacts): ResolvedSessionOptions {
  const o = options ?? {};
  if (!isRecord(o)) fail('session options must be an object');
  checkKeys(o, ['attention', 'kvType', 'chunkSize', 'maxContext', 'threads', 'evaluator'], '');
  const ev: unknown = o.evaluator;
  if (ev !== undefined && (typeof ev !== 'object' || ev === null || typeof (ev as SessionEvaluator).eval !== 'function'))
    fail('evaluator must be an object with an eval(request) method');
  const evaluator = ev !== undefined ? { evaluator: ev as SessionEvaluator } : {};
  const kvType = (o.kvType ?? 'f16') as KvCacheType;
  if (!KV_CACHE_TYPES.includes(kvType)) fail(`kvType must be 'f16', 'f32' or 'q8_0', got ${String(kvType)}`);
  const chunkSize = intOption(o.chunkSize, 'chunkSize', 1, MAX_BATCH, 512);
  const threads = intOption(o.threads, 'threads', 1, 1024, model.defaultThreads);
  const att = o.attention ?? {};

  if (att === 'vanilla') {
    const maxContext = intOption(o.maxContext, 'maxContext', 1, INT_MAX, model.contextLength);
    return {
      attention: 'vanilla',
      kvType,
      chunkSize,
      maxContext,
      threads,
      cache: { mode: 'vanilla', maxContext, maxBatch: chunkSize },
      topKFromLayer: model.nLayer,
      ...evaluator,
    };
  }
  if (!isRecord(att)) fail(`attention must be 'vanilla' or an object { nGlobal?, nLocal?, limitDistance?, topK? }, got ${String(att)}`);
  if (o.maxContext !== undefined) fail("maxContext applies to attention: 'vanilla' only (Λ attention has a fixed ring)");
  checkKeys(att, ['nGlobal', 'nLocal', 'limitDistance', 'topK'], 'attention.');
  const nGlobal = intOption(att.nGlobal, 'attention.nGlobal', 0, INT_MAX, 10);
  const nLocal = intOption(att.nLocal, 'attention.nLocal', 1, INT_MAX, model.contextLength);
  const limitDistance = intOption(att.limitDistance, 'attention.limitDistance', 0, INT_MAX, nLocal);
  if (nGlobal + nLocal > INT_MAX)
    fail(
      `attention.nGlobal + attention.nLocal = ${nGlobal + nLocal} slots is too many` +
        (att.nLocal === undefined ? ` (nLocal defaults to the model's training length, ${model.contextLength}; pass a smaller attention.nLocal)` : ''),
    );

  let topK: { k: number; fromLayer: number; insertAt: number; maxArchive: number } | undefined;
  if (att.topK !== undefined) {
    const t = att.topK;
    if (!isRecord(t)) fail('attention.topK must be an object { k?, fromLayer?, insertAt?, maxArchive }');
    checkKeys(t, ['k', 'fromLayer', 'insertAt', 'maxArchive'], 'attention.topK.');
    if (t.maxArchive === undefined)
      fail('attention.topK.maxArchive is required: the archive of evicted middle keys grows by one slot per token past the ring');
    topK = {
      k: intOption(t.k, 'attention.topK.k', 1, INT_MAX, 5),
      fromLayer: intOption(t.fromLayer, 'attention.topK.fromLayer', 0, model.nLayer - 1, Math.min(4, model.nLayer - 1)),
      insertAt: intOption(t.insertAt, 'attention.topK.insertAt', 0, INT_MAX, Math.floor(nLocal / 2)),
      maxArchive: intOption(t.maxArchive, 'attention.topK.maxArchive', 1, INT_MAX - (nGlobal + nLocal), 0),
    };
  }
  return {
    attention: { nGlobal, nLocal, limitDistance, ...(topK ? { topK } : {}) },
    kvType,
    chunkSize,
    threads,
    cache: {
      mode: 'lambda',
      nGlobal,
      nLocal,
      limitDistance,
      maxBatch: chunkSize,
      ...(topK ? { topK: { k: topK.k, insertAt: topK.insertAt, maxArchive: topK.maxArchive } } : {}),
    },
    topKFromLayer: topK ? topK.fromLayer : model.nLayer,
    ...evaluator,
  };
}

export interface Progress {
  /** Tokens of this call evaluated so far. */
  done: number;
  /** Tokens of this call. */
  total: number;
}

export interface OperationOptions {
  /** Called after every chunk. */
  onProgress?: (progress: Progress) => void;
  /** Aborts between chunks with AbortError; the chunks already evaluated stay in the stream. */
  signal?: AbortSignal;
  /** Recognise control-token texts (`<s>`, `<|im_end|>`) in text input. Default false. */
  parseSpecial?: boolean;
}

export function resolveOperationOptions(options: OperationOptions | undefined, what: string): OperationOptions {
  const o = options ?? {};
  if (!isRecord(o)) fail(`${what} options must be an object`);
  checkKeys(o, ['onProgress', 'signal', 'parseSpecial'], '');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') fail('onProgress must be a function');
  checkSignal(o.signal);
  if (o.parseSpecial !== undefined && typeof o.parseSpecial !== 'boolean') fail('parseSpecial must be a boolean');
  return o as OperationOptions;
}

function checkSignal(signal: unknown): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) fail('signal must be an AbortSignal');
}

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most. Default Infinity: until a stop condition, an abort, or the consumer stops iterating. */
  maxTokens?: number;
  /** Generation ends at the first of these strings; the string itself and anything after it are never emitted. */
  stop?: string[];
  /** Generation ends when one of these ids is sampled (end-of-generation tokens always end it). */
  stopTokens?: number[];
  /** Aborts between tokens with AbortError. */
  signal?: AbortSignal;
  /**
   * Tokens decoded per native call at most (default 64): the engine samples and evaluates them
   * without returning to JavaScript, and returns at least every 16 ms. Tokens come out the same
   * either way; 1 returns after every token. Sessions with an evaluator or top-k attention decode
   * one token per call.
   */
  tokensPerCall?: number;
}

export interface ResolvedGenerateOptions {
  tokensPerCall: number;
  maxTokens: number;
  stop: string[];
  stopTokens: Set<number>;
  signal?: AbortSignal;
  sampling: ResolvedSamplingOptions;
}

export function resolveGenerateOptions(options: GenerateOptions | undefined, nVocab: number): ResolvedGenerateOptions {
  const o = options ?? {};
  if (!isRecord(o)) fail('generate options must be an object');
  const { maxTokens, stop, stopTokens, signal, tokensPerCall, ...sampling } = o;
  checkKeys(sampling, [
    'temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'presencePenalty',
    'frequencyPenalty', 'penaltyLastN', 'seed', 'logitBias',
  ], '');
  if (maxTokens !== undefined && maxTokens !== Infinity && (typeof maxTokens !== 'number' || !Number.isSafeInteger(maxTokens) || maxTokens < 0))
    fail(`maxTokens must be an integer >= 0 or Infinity, got ${String(maxTokens)}`);
  if (stop !== undefined && (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s.length === 0)))
    fail('stop must be an array of non-empty strings');
  if (stopTokens !== undefined && (!Array.isArray(stopTokens) || stopTokens.some((t) => !Number.isInteger(t) || t < 0 || t >= nVocab)))
    fail(`stopTokens must be an array of token ids in [0, ${nVocab})`);
  checkSignal(signal);
  if (tokensPerCall !== undefined && (typeof tokensPerCall !== 'number' || !Number.isSafeInteger(tokensPerCall) || tokensPerCall < 1 || tokensPerCall > 1024))
    fail(`tokensPerCall must be an integer in [1, 1024], got ${String(tokensPerCall)}`);
  return {
    tokensPerCall: tokensPerCall ?? 64,
    maxTokens: maxTokens ?? Infinity,
    stop: stop ? [...stop] : [],
    stopTokens: new Set(stopTokens ?? []),
    signal: signal as AbortSignal | undefined,
    sampling: resolveSamplingOptions(sampling, nVocab),
  };
}

export { MAX_PENALTY_WINDOW };

/**
 * Throughput and memory against position (`lm-infinite bench`): Λ attention against vanilla on the
 * same model in the same run.
 *
 * Λ modes run one stream through every position in ascending order: append up to the position (in
 * pieces of chunkSize tokens), then time `decodeTokens` greedy decode steps there, and go on from
 * where the stream stands. Vanilla attention must size its K/V memory up front for the whole
 * stream, so it gets a fresh session per position with maxContext = position + decodeTokens: its
 * memory at a position is what a vanilla user must allocate to get there. Positions past
 * vanillaMaxContext are skipped ("n/a"); an allocation or native failure is recorded as "failed".
 *
 * Measured at each position p:
 * - prefill tokens/s: the last append piece before p (min(chunkSize, tokens appended) tokens ending at p);
 * - decode tokens/s: decodeTokens greedy tokens (sampling and detokenization included), all of them
 *   evaluated before the clock stops, over the total time. Per-token times say little: generate()
 *   decodes up to 64 tokens per native call and hands them out one by one;
 * - rssBytes: the process's resident memory just after decoding (session alive; process-wide, so
 *   other allocations count too); kvBytes: the session's K/V memory (fixed at creation).
 *
 * The stream is seeded pseudo-random token ids (BOS first when the tokenizer adds one; control
 * tokens left out): throughput does not depend on the text, and no text file is needed. End-of-
 * generation tokens are banned while decoding so every step produces a token.
 */
import { InvalidArgumentError } from '../errors';
import type { Model } from '../model/model';
import { Prng } from '../sampling/prng';
import type { KvCacheType, LambdaAttentionOptions, SessionOptions } from '../session/options';
import type { Session } from '../session/session';

export type BenchModeName = 'lambda' | 'vanilla' | 'lambda-topk';
export const BENCH_MODES: readonly BenchModeName[] = ['lambda', 'vanilla', 'lambda-topk'];

export interface BenchOptions {
  /** Stream positions to measure at (tokens), ascending after de-duplication. */
  positions: number[];
  modes: BenchModeName[];
  /** Greedy decode steps timed at each position. Default 32. */
  decodeTokens?: number;
  /** Prefill piece size (and the session's chunkSize). Default 512. */
  chunkSize?: number;
  /** Vanilla: the largest position it is measured at (it allocates position + decodeTokens); later ones are skipped. Default 16384. */
  vanillaMaxContext?: number;
  /** Λ settings (lambda, lambda-topk). */
  lambda?: Omit<LambdaAttentionOptions, 'topK'>;
  /** lambda-topk settings; the archive is sized for the whole run. */
  topK?: { k?: number; fromLayer?: number; insertAt?: number };
  kvType?: KvCacheType;
  threads?: number;
  /** Seed of the token stream. Default 1. */
  seed?: number;
  signal?: AbortSignal;
  /** Called after each measured (or skipped) position. */
  onPoint?: (mode: BenchModeName, point: BenchPoint) => void;
  /** Called after each prefill piece with the stream's position. */
  onProgress?: (mode: BenchModeName, position: number) => void;
}

export interface BenchPoint {
  /** Requested position. */
  position: number;
  status: 'ok' | 'skipped' | 'failed';
  /** Why a position was skipped or failed. */
  reason?: string;
  /** Tokens in the stream when decoding began (>= position: a Λ stream carries earlier decode steps). */
  startPosition: number | null;
  prefillTokens: number | null;
  prefillTokensPerSecond: number | null;
  decodeTokens: number | null;
  /** decodeTokens / total decode time. */
  decodeTokensPerSecond: number | null;
  rssBytes: number | null;
  kvBytes: number | null;
}

export interface BenchModeResult {
  mode: BenchModeName;
  /** The attention option given to the session(s); vanilla's maxContext varies per position. */
  attention: SessionOptions['attention'];
  /** The session's resolved attention settings (defaults filled in), from the last session. */
  resolved: unknown;
  points: BenchPoint[];
  seconds: number;
}

/**
 * The stable JSON form of `lm-infinite bench --json` (schema "lm-infinite/bench@1"; fields are
 * only ever added). Rates are tokens per second, memory in bytes, null where not measured.
 *
 * {
 *   "schema": "lm-infinite/bench@1",
 *   "model": { "path", "name", "arch", "contextLength", "nLayer", "weightBytes" },
 *   "settings": { "positions", "decodeTokens", "chunkSize", "vanillaMaxContext", "kvType", "threads", "seed" },
 *   "modes": [ { "mode", "attention", "resolved", "seconds",
 *                "points": [ { "position", "status": "ok" | "skipped" | "failed", "reason"?, "startPosition",
 *                              "prefillTokens", "prefillTokensPerSecond", "decodeTokens", "decodeTokensPerSecond",
 *                              "rssBytes", "kvBytes" } ] } ]
 * }
 */
export interface BenchReport {
  schema: 'lm-infinite/bench@1';
  model: { path: string; name: string | null; arch: string; contextLength: number; nLayer: number; weightBytes: number };
  settings: {
    positions: number[];
    decodeTokens: number;
    chunkSize: number;
    vanillaMaxContext: number;
    kvType: KvCacheType;
    threads: number;
    seed: number;
  };
  modes: BenchModeResult[];
}

const DEFAULTS = { decodeTokens: 32, chunkSize: 512, vanillaMaxContext: 16384, kvType: 'f16' as const, seed: 1 };

function emptyPoint(position: number, status: 'skipped' | 'failed', reason: string): BenchPoint {
  return {
    position,
    status,
    reason,
    startPosition: null,
    prefillTokens: null,
    prefillTokensPerSecond: null,
    decodeTokens: null,
    decodeTokensPerSecond: null,
    rssBytes: null,
    kvBytes: null,
  };
}

/** A deterministic token stream: BOS (when the tokenizer adds one), then seeded ids that are not control tokens. */
export class BenchTokens {
  private readonly ids: number[];
  private readonly rng: Prng;
  private readonly bos: number | null;
  private produced = 0;

  constructor(model: Pick<Model, 'tokenizer' | 'info'>, seed: number) {
    const t = model.tokenizer;
    this.ids = [];
    for (let id = 0; id < t.vocabSize; id++) if (!t.isControl(id) && !t.isEog(id)) this.ids.push(id);
    if (this.ids.length === 0) throw new InvalidArgumentError('the vocabulary has no ordinary tokens to benchmark with');
    this.rng = new Prng(seed);
    this.bos = t.addBos ? t.bos : null;
  }

  /** The next `n` ids of the stream. */
  next(n: number): Int32Array {
    const out = new Int32Array(n);
    for (let k = 0; k < n; k++, this.produced++)
      out[k] = this.produced === 0 && this.bos !== null ? this.bos : this.ids[Math.floor(this.rng.next() * this.ids.length)];
    return out;
  }
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** Appends `count` tokens in pieces; the last piece is min(chunk, count) tokens and is timed. */
async function appendTimed(
  session: Session,
  tokens: BenchTokens,
  count: number,
  chunk: number,
  o: { signal?: AbortSignal; onProgress?: (position: number) => void },
): Promise<{ tokens: number; seconds: number } | null> {
  if (count <= 0) return null;
  const last = Math.min(chunk, count);
  let left = count - last;
  while (left > 0) {
    const n = Math.min(chunk, left);
    await session.append(tokens.next(n), { signal: o.signal });
    left -= n;
    o.onProgress?.(session.position);
  }
  const piece = tokens.next(last);
  const t0 = now();
  await session.append(piece, { signal: o.signal });
  const seconds = now() - t0;
  o.onProgress?.(session.position);
  return { tokens: last, seconds };
}

/** Times `n` greedy decode tokens (end-of-generation ids banned), all evaluated before the clock stops. */
async function decodeTimed(
  session: Session,
  n: number,
  banned: number[],
  signal?: AbortSignal,
): Promise<{ tokens: number; seconds: number }> {
  const logitBias: Record<number, number> = {};
  for (const id of banned) logitBias[id] = -Infinity;
  const t0 = now();
  let tokens = 0;
  for await (const piece of session.generate({ maxTokens: n, temperature: 0, seed: 0, logitBias, signal })) {
    void piece;
    tokens++;
  }
  await session.append([], { signal }); // evaluates the last generated token
  return { tokens, seconds: now() - t0 };
}

function lambdaAttention(o: BenchOptions, mode: BenchModeName, archive: number): LambdaAttentionOptions {
  const a: LambdaAttentionOptions = { ...(o.lambda ?? {}) };
  if (mode === 'lambda-topk') a.topK = { ...(o.topK ?? {}), maxArchive: Math.max(1, archive) };
  return a;
}

export async function runBench(model: Model, options: BenchOptions): Promise<BenchReport> {
  const o = {
    ...options,
    decodeTokens: options.decodeTokens ?? DEFAULTS.decodeTokens,
    chunkSize: options.chunkSize ?? DEFAULTS.chunkSize,
    vanillaMaxContext: options.vanillaMaxContext ?? DEFAULTS.vanillaMaxContext,
    kvType: options.kvType ?? DEFAULTS.kvType,
    seed: options.seed ?? DEFAULTS.seed,
  };
  const positions = [...new Set(o.positions)].sort((a, b) => a - b);
  if (positions.length === 0 || positions.some((p) => !Number.isInteger(p) || p < 1))
    throw new InvalidArgumentError('bench positions must be positive integers');
  const banned = model.tokenizer.eogIds;
  const common = { kvType: o.kvType, chunkSize: o.chunkSize, ...(o.threads !== undefined ? { threads: o.threads } : {}) };
  const results: BenchModeResult[] = [];

  for (const mode of o.modes) {
    const started = now();
    const points: BenchPoint[] = [];
    const tokens = new BenchTokens(model, o.seed);
    const progress = (p: number) => o.onProgress?.(mode, p);
    const record = (pt: BenchPoint) => {
      points.push(pt);
      o.onPoint?.(mode, pt);
    };
    let resolved: unknown = null;
    let attention: SessionOptions['attention'];

    if (mode === 'vanilla') {
      attention = 'vanilla';
      for (const position of positions) {
        if (position > o.vanillaMaxContext) {
          record(emptyPoint(position, 'skipped', `position ${position} is over the vanilla max context ${o.vanillaMaxContext}`));
          continue;
        }
        const total = position + o.decodeTokens;
        let session: Session | null = null;
        try {
          session = model.createSession({ attention: 'vanilla', maxContext: total, ...common });
          resolved = session.options.attention;
          const stream = new BenchTokens(model, o.seed);
          const prefill = await appendTimed(session, stream, position, o.chunkSize, { signal: o.signal, onProgress: progress });
          const startPosition = session.position;
          const decode = await decodeTimed(session, o.decodeTokens, banned, o.signal);
          record(measured(position, startPosition, prefill, decode, session));
        } catch (err) {
          if ((err as Error)?.name === 'AbortError') throw err;
          record(emptyPoint(position, 'failed', String((err as Error)?.message ?? err)));
        } finally {
          session?.dispose();
        }
      }
    } else {
      const archive = positions[positions.length - 1] + positions.length * o.decodeTokens + o.chunkSize;
      attention = lambdaAttention(o, mode, archive);
      let session: Session | null = null;
      try {
        session = model.createSession({ attention, ...common });
        resolved = session.options.attention;
        for (const position of positions) {
          const prefill = await appendTimed(session, tokens, position - session.position, o.chunkSize, { signal: o.signal, onProgress: progress });
          const startPosition = session.position;
          const decode = await decodeTimed(session, o.decodeTokens, banned, o.signal);
          record(measured(position, startPosition, prefill, decode, session));
        }
      } catch (err) {
        if ((err as Error)?.name === 'AbortError') throw err;
        const reason = String((err as Error)?.message ?? err);
        for (const position of positions.slice(points.length)) record(emptyPoint(position, 'failed', reason));
      } finally {
        session?.dispose();
      }
    }
    results.push({ mode, attention, resolved, points, seconds: now() - started });
  }

  return {
    schema: 'lm-infinite/bench@1',
    model: {
      path: model.info.path,
      name: model.info.name,
      arch: model.info.arch,
      contextLength: model.info.contextLength,
      nLayer: model.info.hparams.nLayer,
      weightBytes: model.info.weightBytes,
    },
    settings: {
      positions,
      decodeTokens: o.decodeTokens,
      chunkSize: o.chunkSize,
      vanillaMaxContext: o.vanillaMaxContext,
      kvType: o.kvType,
      threads: o.threads ?? model.info.threads,
      seed: o.seed,
    },
    modes: results,
  };
}

function measured(
  position: number,
  startPosition: number,
  prefill: { tokens: number; seconds: number } | null,
  decode: { tokens: number; seconds: number },
  session: Session,
): BenchPoint {
  return {
    position,
    status: 'ok',
    startPosition,
    prefillTokens: prefill ? prefill.tokens : null,
    prefillTokensPerSecond: prefill && prefill.seconds > 0 ? prefill.tokens / prefill.seconds : null,
    decodeTokens: decode.tokens,
    decodeTokensPerSecond: decode.seconds > 0 ? decode.tokens / decode.seconds : null,
    rssBytes: process.memoryUsage().rss,
    kvBytes: session.kvBytes,
  };
}

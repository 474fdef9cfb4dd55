/**
 * A session: one token stream over a loaded model, with its own K/V memory (a native context)
 * and slot table (KvCache). append / score / generate extend the stream; one runs at a time.
 *
 * Concurrency: operations on one session are queued (FIFO) and run one after another; a queued
 * operation whose signal aborts leaves the queue with AbortError. generate() holds the queue from
 * its first next() until it finishes or the loop is left (break / return / throw): a generator
 * that is neither finished nor closed keeps later operations waiting. Sessions are independent;
 * many may run at once on one model.
 */
import { AbortError, DisposedError, InvalidArgumentError, NativeError } from '../errors';
import { evalBatch, KvCache, type KvCachePlan } from '../cache/kv-cache';
import { fromNativeError } from '../native/addon';
import type { NativeContext, NativeDecodeResult, NativeEvalBatch, NativeModel, NativeSampleToken } from '../native/types';
import { MAX_PENALTY_WINDOW } from '../sampling/sampler';
import { Sampler } from '../sampling/sampler';
import { logSumExp } from '../sampling/transforms';
import type { Tokenizer } from '../tokenizer';
import {
  type GenerateOptions,
  type OperationOptions,
  type Progress,
  type ResolvedGenerateOptions,
  type ResolvedSessionOptions,
  type SessionOptions,
  resolveGenerateOptions,
  resolveOperationOptions,
  resolveSessionOptions,
} from './options';
import { OperationQueue } from './queue';
import { PieceEmitter } from './piece-emitter';

/** What a session needs from its model. */
export interface SessionHost {
  readonly tokenizer: Tokenizer;
  /** The addon's sampler, when there is one (lib/sampling's Sampler uses it). */
  readonly nativeSampler?: NativeSampleToken;
  readonly nVocab: number;
  readonly nLayer: number;
  readonly contextLength: number;
  readonly defaultThreads: number;
  /** The native model; throws DisposedError once the model is disposed. */
  nativeModel(): NativeModel;
  /** Called once when the session is disposed. */
  forget(session: Session): void;
}

export type TextOrTokens = string | ArrayLike<number>;

export interface AppendResult {
  /** Tokens appended (a BOS added to a fresh stream included). */
  count: number;
}

export interface ScoreResult {
  /** Negative log-likelihood (nats) of each scored token given the stream before it. */
  nll: Float64Array;
  /** Scored tokens: every token appended, except the first token of a fresh stream (nothing predicts it). */
  count: number;
  /** Sum of nll. */
  totalNll: number;
  /** Absolute position of the first scored token. */
  startPosition: number;
}

export interface GeneratedPiece {
  /** The sampled token; for a last piece that only releases held-back text, the stop token that ended generation. */
  token: number;
  /** Text this piece completes ('' while bytes of a character or a possible stop string are held back). */
  text: string;
}

export interface GenerateResult {
  /** 'maxTokens'; 'stopString' (a stop string was cut); 'stopToken' (an end-of-generation or stopTokens id was sampled). */
  reason: 'maxTokens' | 'stopString' | 'stopToken';
  /** Tokens generated and appended to the stream (a stop token is not appended). */
  tokens: number;
}

const EMPTY = new Int32Array(0);
/** A decode run returns to JavaScript at least this often (ms), however many tokens it may still take. */
const DECODE_RUN_BUDGET_MS = 16;

/** What a decode run left to settle: its steps, the ids it sampled and the last step's logits. */
interface DecodeRunResult {
  steps: number;
  tokens: Int32Array;
  logits: Float32Array;
}
/** Logit rows returned per scoring eval are capped to about this many floats (64 MiB). */
const SCORE_LOGITS_BUDGET = 1 << 24;

export class Session {
  /** The options the session was created with, defaults filled in. */
  readonly options: Readonly<ResolvedSessionOptions>;
  private readonly host: SessionHost;
  private readonly cache: KvCache;
  private readonly ctx: NativeContext;
  private readonly queue = new OperationQueue();
  private readonly nVocab: number;
  /** Logits after the last evaluated token: the prediction of the next one. */
  private lastLogits: Float32Array | null = null;
  /** The native eval's output row for 'last' batches (reused; see evalPlan). */
  private lastRow: Float32Array | null = null;
  /** The native eval's output rows for 'all' batches (scoring), grown once and reused; see evalPlan. */
  private allRows: Float32Array | null = null;
  /** Decode runs' outputs (sampled ids, last logits), reused. */
  private runTokens: Int32Array | null = null;
  private runLogits: Float32Array | null = null;
  /** A generated token that is part of the stream but not evaluated yet (evaluated by the next operation). */
  private pending: number | null = null;
  /** The latest tokens of the stream (a ring), for repetition penalties. */
  private readonly recent = new Int32Array(MAX_PENALTY_WINDOW);
  private recentTotal = 0;
  /** True while the stream holds nothing but (at most) a leading BOS. */
  private onlyBos = true;
  private state: 'open' | 'disposed' | 'broken' = 'open';
  private failure: Error | null = null;
  private running: Promise<unknown> | null = null;
  private nativeClosed = false;

  /** @internal Use model.createSession(). */
  constructor(host: SessionHost, options?: SessionOptions) {
    this.host = host;
    this.nVocab = host.nVocab;
    this.options = resolveSessionOptions(options, { contextLength: host.contextLength, nLayer: host.nLayer, defaultThreads: host.defaultThreads });
    this.cache = new KvCache(this.options.cache);
    const { nSlot, nArchive, maxBatch } = this.cache.size;
    const model = host.nativeModel();
    try {
      this.ctx = model.createContext({
        nSlot,
        nArchive,
        topKFromLayer: this.options.topKFromLayer,
        kvType: this.options.kvType,
        maxBatch,
        threads: this.options.threads,
      });
    } catch (err) {
      throw fromNativeError(err);
    }
  }

  /** Tokens in the stream. */
  get tokenCount(): number {
    return this.cache.tokenCount + (this.pending !== null ? 1 : 0);
  }

  /** Absolute position the next token takes. */
  get position(): number {
    return this.cache.origin + this.tokenCount;
  }

  /** Bytes of K/V memory this session holds (fixed at creation; top-k archive included). */
  get kvBytes(): number {
    this.checkOpen();
    return this.ctx.kvBytes();
  }

  /**
   * Native evals of this session (forward passes through its own context, not an `evaluator`), the
   * native calls that ran them (a decode run does several evals in one call), and the seconds the
   * engine spent in the forward passes on the worker thread. Wall time around an operation minus
   * computeSeconds is what tokenization, sampling, the JS and N-API layers and the thread hand-off cost.
   */
  get stats(): { evals: number; calls: number; computeSeconds: number } {
    this.checkOpen();
    return this.ctx.stats();
  }

  /** Top-k mode: archive slots in use (of attention.topK.maxArchive); 0 otherwise. */
  get archiveUsed(): number {
    return this.cache.archiveUsed;
  }

  get disposed(): boolean {
    return this.state === 'disposed';
  }

  /**
   * The ids append(text) would add to the stream now: BOS first on an empty stream when the
   * tokenizer adds one, and no SentencePiece space prefix when the text continues ordinary text.
   */
  tokenize(text: string, options: { parseSpecial?: boolean } = {}): Int32Array {
    this.checkOpen();
    if (typeof text !== 'string') throw new InvalidArgumentError('tokenize expects a string');
    return this.toTokens(text, options.parseSpecial ?? false);
  }

  /**
   * Appends text or token ids to the stream (prefill, in chunks of chunkSize). Text appended to an
   * empty stream gets BOS first when the tokenizer says so; token ids are appended as given.
   * Aborting keeps the chunks already evaluated; the session stays usable.
   */
  async append(input: TextOrTokens, options?: OperationOptions): Promise<AppendResult> {
    const o = resolveOperationOptions(options, 'append');
    this.checkInput(input);
    return this.exclusive(o.signal, async () => {
      const tokens = this.toTokens(input, o.parseSpecial ?? false);
      await this.feed(tokens, o, null);
      return { count: tokens.length };
    });
  }

  /**
   * Appends like append() and returns the negative log-likelihood of every appended token given
   * the stream before it. On abort the evaluated chunks stay in the stream and no result is returned.
   */
  async score(input: TextOrTokens, options?: OperationOptions): Promise<ScoreResult> {
    const o = resolveOperationOptions(options, 'score');
    this.checkInput(input);
    return this.exclusive(o.signal, async () => {
      const tokens = this.toTokens(input, o.parseSpecial ?? false);
      const fresh = this.tokenCount === 0;
      const count = Math.max(0, tokens.length - (fresh ? 1 : 0));
      const startPosition = this.position + (fresh ? 1 : 0);
      const nll = new Float64Array(count);
      await this.feed(tokens, o, nll);
      let totalNll = 0;
      for (let k = 0; k < count; k++) totalNll += nll[k];
      return { nll, count, totalNll, startPosition };
    });
  }

  /**
   * Generates tokens, each appended to the stream, as an async iterator of pieces. Options are
   * checked here (InvalidArgumentError); work starts at the first next(). Leaving the loop early
   * is fine: the tokens yielded so far stay in the stream.
   */
  generate(options?: GenerateOptions): AsyncGenerator<GeneratedPiece, GenerateResult, undefined> {
    this.checkOpen();
    const o = resolveGenerateOptions(options, this.nVocab);
    return this.runGenerate(o);
  }

  /** Frees the K/V memory (once no native call is running). Later calls throw DisposedError. Idempotent. */
  dispose(): void {
    if (this.state === 'disposed') return;
    this.state = 'disposed';
    this.host.forget(this);
    if (this.running === null) this.closeNative();
  }

  /** @internal Resolves once the native context is released (after dispose() and any running eval). */
  async closed(): Promise<void> {
    while (this.running !== null) await this.running.catch(() => undefined);
  }

  // ----- internals -------------------------------------------------------------------------

  private closeNative(): void {
    if (this.nativeClosed) return;
    this.nativeClosed = true;
    this.ctx.dispose();
  }

  private checkOpen(): void {
    if (this.state === 'disposed') throw new DisposedError('this session');
    if (this.state === 'broken')
      throw new NativeError(`this session cannot be used after a native failure (${this.failure?.message}); create a new session`, { cause: this.failure });
  }

  private checkpoint(signal?: AbortSignal): void {
    this.checkOpen();
    if (signal?.aborted) throw new AbortError();
  }

  private checkInput(input: TextOrTokens): void {
    if (typeof input === 'string') return;
    if (input === null || typeof input !== 'object' || typeof (input as ArrayLike<number>).length !== 'number')
      throw new InvalidArgumentError('input must be a string or an array of token ids');
    for (let k = 0; k < input.length; k++) {
      const id = input[k];
      if (!Number.isInteger(id) || id < 0 || id >= this.nVocab)
        throw new InvalidArgumentError(`token ${k} of the input is ${String(id)}, not an id in [0, ${this.nVocab})`);
    }
  }

  /** Text → ids (BOS first on an empty stream, when the tokenizer adds one); ids are copied. */
  private toTokens(input: TextOrTokens, parseSpecial: boolean): Int32Array {
    if (typeof input !== 'string') return Int32Array.from(input);
    const t = this.host.tokenizer;
    // Text continuing ordinary text gets no SentencePiece space prefix: appending "Hello" then
    // " world" encodes as "Hello world" does.
    const last = this.lastToken();
    const spacePrefix = last === null || t.isControl(last);
    const ids = t.encode(input, { addSpecial: false, parseSpecial, spacePrefix });
    if (this.tokenCount === 0 && t.addBos && t.bos !== null) ids.unshift(t.bos);
    return Int32Array.from(ids);
  }

  private async exclusive<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    await this.queue.acquire(signal);
    try {
      this.checkpoint(signal);
      return await fn();
    } finally {
      this.queue.release();
    }
  }

  private pushRecent(token: number): void {
    this.recent[this.recentTotal % MAX_PENALTY_WINDOW] = token;
    this.recentTotal++;
  }

  /** The stream's last token (appended or generated), or null on an empty stream. */
  private lastToken(): number | null {
    return this.recentTotal > 0 ? this.recent[(this.recentTotal - 1) % MAX_PENALTY_WINDOW] : null;
  }

  /** The last n tokens, oldest first. */
  private recentWindow(n: number): number[] {
    const m = Math.min(n, this.recentTotal, MAX_PENALTY_WINDOW);
    const out = new Array<number>(m);
    for (let k = 0; k < m; k++) out[k] = this.recent[(this.recentTotal - m + k) % MAX_PENALTY_WINDOW];
    return out;
  }

  /**
   * Evaluates the pending token (if any) and `tokens`, chunk by chunk, and appends them to the
   * stream. With `nll`, writes the NLL of each new token that has a prediction.
   */
  private async feed(tokens: Int32Array, o: { signal?: AbortSignal; onProgress?: (p: Progress) => void }, nll: Float64Array | null): Promise<void> {
    const offset = this.pending !== null ? 1 : 0;
    const list = new Int32Array(offset + tokens.length);
    if (offset) list[0] = this.pending!;
    list.set(tokens, offset);
    if (list.length === 0) return;
    this.cache.checkFits(list.length); // all or nothing: a stream that would overflow is refused up front

    const V = this.nVocab;
    const step = nll ? Math.max(1, Math.min(this.cache.size.maxBatch, Math.floor(SCORE_LOGITS_BUDGET / V))) : this.cache.size.maxBatch;
    // predictor: the logits that predict list[a] (null on a fresh stream).
    let predictor: Float32Array | null = offset === 0 ? this.lastLogits : null;
    const fresh = this.cache.tokenCount === 0 && offset === 0;
    const nllIndex = (m: number) => m - offset - (fresh ? 1 : 0); // list index → nll index
    const bos = this.host.tokenizer.bos;

    for (let a = 0; a < list.length; a += step) {
      this.checkpoint(o.signal);
      const b = Math.min(list.length, a + step);
      const plan = this.cache.plan(b - a);
      const rows = nll ? b - a : 1;
      const out = await this.evalPlan(plan, list.slice(a, b), nll ? 'all' : 'last');
      if (out.length !== rows * V) this.breakWith(new NativeError(`native eval returned ${out.length} logits, expected ${rows} × ${V}`));
      this.cache.commit(plan);

      for (let m = a; m < b; m++) {
        if (m >= offset) {
          this.pushRecent(list[m]);
          if (!(plan.start + (m - a) === 0 && list[m] === bos)) this.onlyBos = false;
        }
        if (nll) {
          const k = nllIndex(m);
          if (k >= 0 && predictor !== null) nll[k] = logSumExp(predictor) - predictor[list[m]];
          predictor = out.subarray((m - a) * V, (m - a + 1) * V);
        }
      }
      this.pending = null;
      // One logits row kept per session, overwritten in place (no allocation per decoded token).
      if (this.lastLogits === null) this.lastLogits = new Float32Array(V);
      this.lastLogits.set(out.subarray((rows - 1) * V, rows * V));
      predictor = this.lastLogits;
      o.onProgress?.({ done: Math.max(0, b - offset), total: tokens.length });
    }
  }

  private async evalPlan(plan: KvCachePlan, tokens: Int32Array, logits: NativeEvalBatch['logits']): Promise<Float32Array> {
    const batch = evalBatch(plan, tokens, logits);
    const evaluator = this.options.evaluator;
    if (logits === 'last' && !evaluator) {
      // One row, written in place each time: a decoded token allocates no logits array.
      this.lastRow ??= new Float32Array(this.nVocab);
      batch.out = this.lastRow;
    } else if (logits === 'all' && !evaluator) {
      // Scoring reads each chunk's rows before the next eval: one buffer serves every chunk, so a
      // long scored stream does not allocate (and free) a logits block per chunk.
      const size = tokens.length * this.nVocab;
      if (this.allRows === null || this.allRows.length < size) this.allRows = new Float32Array(size);
      batch.out = this.allRows.subarray(0, size);
    }
    let call: Promise<Float32Array>;
    try {
      call = evaluator ? evaluator.eval({ model: this.host.nativeModel(), context: this.ctx, batch }) : this.ctx.eval(batch);
    } catch (err) {
      throw fromNativeError(err); // refused before anything ran: the session is unchanged
    }
    this.running = call;
    try {
      return await call;
    } catch (err) {
      return this.breakWith(fromNativeError(err));
    } finally {
      this.running = null;
      if (this.state === 'disposed') this.closeNative();
    }
  }

  /** A native failure may have left K/V memory half written: the session is unusable from here on. */
  private breakWith(err: Error): never {
    if (this.state === 'open') {
      this.state = 'broken';
      this.failure = err;
    }
    throw err;
  }

  /** Steps for the next decode run (at most the tokens left to generate); 0: one eval per token. */
  private decodeRunSteps(o: ResolvedGenerateOptions, produced: number): number {
    if (this.pending === null || o.tokensPerCall <= 1 || this.options.evaluator || this.cache.size.nArchive > 0) return 0;
    if (this.ctx.decode === undefined || this.ctx.rollback === undefined) return 0;
    // The run evaluates `steps` tokens and leaves the last id it samples pending: steps + 1 must fit.
    const fit = this.cache.remaining() - 1;
    return Math.max(0, Math.min(o.tokensPerCall, o.maxTokens - produced, this.cache.size.maxBatch, fit));
  }

  /**
   * Ids after which a decode run returns: end-of-generation and stop tokens, and every token that
   * could complete a stop string. The decoder emits a character with the token that carries its
   * last byte, so a stop string can only complete at a token whose bytes hold its last byte; a
   * stop string with U+FFFD in it (which the decoder also emits for bytes that are not UTF-8)
   * could complete anywhere, and ends a run after every token.
   */
  private endAfterTable(o: ResolvedGenerateOptions): Uint8Array {
    const t = this.host.tokenizer;
    const table = new Uint8Array(this.nVocab);
    for (const id of t.eogIds) if (id >= 0 && id < this.nVocab) table[id] = 1;
    for (const id of o.stopTokens) table[id] = 1;
    if (o.stop.length === 0) return table;
    const lastBytes = new Set<number>();
    const encoder = new TextEncoder();
    for (const s of o.stop) {
      const bytes = encoder.encode(s);
      for (let i = 0; i + 2 < bytes.length; i++)
        if (bytes[i] === 0xef && bytes[i + 1] === 0xbf && bytes[i + 2] === 0xbd) return table.fill(1);
      lastBytes.add(bytes[bytes.length - 1]);
    }
    for (let id = 0; id < this.nVocab && id < t.vocabSize; id++) {
      const piece = t.pieceBytes(id, false);
      for (let i = 0; i < piece.length; i++)
        if (lastBytes.has(piece[i])) {
          table[id] = 1;
          break;
        }
    }
    return table;
  }

  /** Evaluates the pending token and up to steps - 1 sampled ones natively (see decodeRunSteps). */
  private async decodeRun(steps: number, sampler: Sampler, endAfter: Uint8Array): Promise<DecodeRunResult> {
    const plan = this.cache.plan(steps);
    const n = Math.min(this.recentTotal, sampler.options.penaltyLastN, MAX_PENALTY_WINDOW);
    const recent = new Int32Array(n);
    for (let k = 0; k < n; k++) recent[k] = this.recent[(this.recentTotal - n + k) % MAX_PENALTY_WINDOW];
    if (this.runTokens === null || this.runTokens.length < this.cache.size.maxBatch) this.runTokens = new Int32Array(this.cache.size.maxBatch);
    this.runLogits ??= new Float32Array(this.nVocab);
    let call: Promise<NativeDecodeResult>;
    try {
      call = this.ctx.decode!({
        token: this.pending!,
        positions: plan.positions,
        slots: plan.slots,
        slotPositions: plan.attendedSlotPositions,
        mask: plan.mask,
        recent,
        endAfter,
        budgetMs: DECODE_RUN_BUDGET_MS,
        sampling: sampler.nativeParams(),
        rngState: sampler.rngState,
        out: this.runLogits,
        sampledOut: this.runTokens,
      });
    } catch (err) {
      throw fromNativeError(err); // refused before anything ran: the session is unchanged
    }
    this.running = call;
    try {
      const r = await call;
      sampler.rngState = r.rngState;
      return { steps: r.steps, tokens: this.runTokens.subarray(0, r.sampled), logits: this.runLogits };
    } catch (err) {
      return this.breakWith(fromNativeError(err));
    } finally {
      this.running = null;
      if (this.state === 'disposed') this.closeNative();
    }
  }

  /**
   * The stream keeps the run's first `evals` steps and `pending` as its next token; the steps after
   * them are taken back (their K/V rows restored), so the stream is what the consumer was handed.
   */
  private settleRun(run: DecodeRunResult, evals: number, pending: number | null): void {
    if (evals > 0) this.cache.commit(this.cache.plan(evals));
    if (evals < run.steps && !this.nativeClosed) {
      try {
        this.ctx.rollback!(run.steps - evals);
      } catch (err) {
        this.breakWith(fromNativeError(err));
      }
    }
    this.pending = pending;
    if (evals === run.steps) {
      if (this.lastLogits === null) this.lastLogits = new Float32Array(this.nVocab);
      this.lastLogits.set(run.logits);
    }
  }

  private async *runGenerate(o: ResolvedGenerateOptions): AsyncGenerator<GeneratedPiece, GenerateResult, undefined> {
    this.checkOpen();
    await this.queue.acquire(o.signal);
    try {
      this.checkpoint(o.signal);
      const t = this.host.tokenizer;
      if (this.tokenCount === 0) {
        if (!t.addBos || t.bos === null)
          throw new InvalidArgumentError('the stream is empty and this tokenizer adds no BOS: append a prompt before generate()');
        await this.feed(Int32Array.of(t.bos), o, null);
      }
      const sampler = new Sampler(o.sampling, this.nVocab, this.host.nativeSampler);
      const out = new PieceEmitter(t, o, this.onlyBos, (token) => {
        this.pushRecent(token);
        this.onlyBos = false;
      });
      let endAfter: Uint8Array | null = null;
      while (out.produced < o.maxTokens) {
        this.checkpoint(o.signal);
        const steps = this.decodeRunSteps(o, out.produced);
        if (steps > 0) {
          // Several tokens per native call: the pending token and the ids sampled after it are
          // evaluated natively, then handed out here one by one. Until a token is handed out, the
          // stream has not taken it: settleRun() keeps what was handed out and takes back the rest.
          endAfter ??= this.endAfterTable(o);
          const run = await this.decodeRun(steps, sampler, endAfter);
          let evals = 0; // steps the stream keeps
          let pending: number | null = this.pending;
          try {
            for (let k = 0; k < run.tokens.length; k++) {
              if (k > 0) this.checkpoint(o.signal);
              const token = run.tokens[k];
              evals = k + 1;
              pending = out.isStop(token) ? null : token;
              const end = yield* out.handOut(token);
              if (end !== null) return end;
            }
            // Every id handed out; a run that stopped short of sampling (the TypeScript sampler takes
            // its last row) keeps all its steps with nothing pending.
            if (run.tokens.length < run.steps) {
              evals = run.steps;
              pending = null;
            }
          } finally {
            this.settleRun(run, evals, pending);
          }
          continue;
        }
        if (this.pending !== null) await this.feed(EMPTY, o, null);
        this.cache.checkFits(1);
        const token = sampler.sample(this.lastLogits!, this.recentWindow(o.sampling.penaltyLastN));
        if (!out.isStop(token)) this.pending = token;
        const end = yield* out.handOut(token);
        if (end !== null) return end;
      }
      return { reason: 'maxTokens', tokens: out.produced };
    } finally {
      this.queue.release();
    }
  }
}

/**
 * Continuous batching across sessions. Sessions created with `{ evaluator: scheduler }` hand every
 * native eval (a prefill chunk or one decode token) to the scheduler instead of running it on
 * their own context; the scheduler runs whatever is waiting as ONE forward pass
 * (NativeModel.evalMany), resolves each session's promise with its logits, and starts the next
 * pass as soon as the previous one is done and the sessions it served have queued their next
 * step. So throughput grows with the number of concurrent sessions, and a session that joins or
 * leaves (finished, cancelled, disconnected) only changes the next pass.
 *
 * Fairness: a session has at most one eval waiting (its operations are serialized), and the queue
 * is FIFO, so every waiting session is in the next pass unless the token budget
 * (maxBatchTokens) is spent; a request that does not fit stays at the head and goes first in the
 * next pass, while smaller ones (decode steps) behind it may still fill the current one. Keep
 * the sessions' chunkSize well under maxBatchTokens so long prompts are prefilled in slices
 * between other sessions' decode steps.
 */
import { fromNativeError } from '../native/addon';
import type { NativeContext, NativeEvalBatch, NativeModel } from '../native/types';
import type { SessionEvaluator } from '../session';

export interface BatchSchedulerOptions {
  /** Most tokens in one forward pass (a single larger request still runs, alone). Default 512. */
  maxBatchTokens?: number;
  /** Most sequences in one forward pass. Default 256. */
  maxSequences?: number;
}

export interface BatchStepInfo {
  sequences: number;
  tokens: number;
  seconds: number;
}

interface Waiting {
  model: NativeModel;
  context: NativeContext;
  batch: NativeEvalBatch;
  resolve: (logits: Float32Array) => void;
  reject: (err: unknown) => void;
}

export class BatchScheduler implements SessionEvaluator {
  readonly maxBatchTokens: number;
  readonly maxSequences: number;
  private readonly stepListeners = new Set<(info: BatchStepInfo) => void>();
  private readonly queue: Waiting[] = [];
  private running = false;
  private scheduled = false;
  private stepsRun = 0;
  private tokensRun = 0;

  constructor(options: BatchSchedulerOptions = {}) {
    const { maxBatchTokens = 512, maxSequences = 256 } = options;
    if (!Number.isInteger(maxBatchTokens) || maxBatchTokens < 1) throw new RangeError(`maxBatchTokens must be an integer >= 1, got ${maxBatchTokens}`);
    if (!Number.isInteger(maxSequences) || maxSequences < 1) throw new RangeError(`maxSequences must be an integer >= 1, got ${maxSequences}`);
    this.maxBatchTokens = maxBatchTokens;
    this.maxSequences = maxSequences;
  }

  /** Calls `listener` after every forward pass (metrics); returns the function that removes it. */
  onStep(listener: (info: BatchStepInfo) => void): () => void {
    this.stepListeners.add(listener);
    return () => this.stepListeners.delete(listener);
  }

  /** Evals waiting for a forward pass. */
  get queueDepth(): number {
    return this.queue.length;
  }

  get steps(): number {
    return this.stepsRun;
  }

  get tokens(): number {
    return this.tokensRun;
  }

  eval(request: { model: NativeModel; context: NativeContext; batch: NativeEvalBatch }): Promise<Float32Array> {
    return new Promise<Float32Array>((resolve, reject) => {
      this.queue.push({ ...request, resolve, reject });
      this.kick();
    });
  }

  /**
   * Starts a pass on the next turn of the event loop, after the sessions served by the previous
   * pass have run their continuations (sampling, streaming) and queued their next eval.
   */
  private kick(): void {
    if (this.running || this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.step();
    });
  }

  /** FIFO within the budget; all of one model (the head's). */
  private take(): Waiting[] {
    const model = this.queue[0].model;
    const taken: Waiting[] = [];
    let tokens = 0;
    for (let k = 0; k < this.queue.length && taken.length < this.maxSequences; ) {
      const w = this.queue[k];
      const n = w.batch.tokens.length;
      if (w.model !== model || (taken.length > 0 && tokens + n > this.maxBatchTokens)) {
        k++;
        continue;
      }
      taken.push(w);
      tokens += n;
      this.queue.splice(k, 1);
    }
    return taken;
  }

  private async step(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const items = this.take();
    const t0 = process.hrtime.bigint();
    try {
      const outs = await this.evaluate(items);
      items.forEach((w, k) => w.resolve(outs[k]));
    } catch (err) {
      if ((err as { code?: string })?.code === 'INVALID_ARGUMENT' && items.length > 1) {
        // One bad batch refuses the whole call before anything ran: run each alone, so only it fails.
        for (const w of items) await this.evaluate([w]).then((o) => w.resolve(o[0]), w.reject);
      } else {
        for (const w of items) w.reject(err);
      }
    } finally {
      const tokens = items.reduce((s, w) => s + w.batch.tokens.length, 0);
      this.stepsRun++;
      this.tokensRun += tokens;
      const info = { sequences: items.length, tokens, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
      for (const listener of this.stepListeners) {
        try {
          listener(info);
        } catch {
          // metrics must not break the loop
        }
      }
      this.running = false;
      this.kick();
    }
  }

  private async evaluate(items: Waiting[]): Promise<Float32Array[]> {
    const model = items[0].model;
    try {
      if (typeof model.evalMany === 'function') return await model.evalMany(items.map((w) => ({ context: w.context, batch: w.batch })));
      // An addon without evalMany: one eval per sequence, still one pass at a time.
      const outs: Float32Array[] = [];
      for (const w of items) outs.push(await w.context.eval(w.batch));
      return outs;
    } catch (err) {
      throw fromNativeError(err);
    }
  }
}

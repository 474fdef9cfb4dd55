/**
 * The ring-buffer K/V policy (DESIGN.md §2): which slot each token of the stream takes, and the
 * position every slot holds. Pure bookkeeping: the native context owns the K/V memory and reads
 * the slot table from each NativeEvalBatch.
 *
 * Λ mode, for a stream whose token t sits at position origin + t:
 *
 *   slots [0, nGlobal)                      pinned: token t < nGlobal lives in slot t for ever
 *   slots [nGlobal, nGlobal + nLocal)       the ring: token t >= nGlobal takes slot
 *                                           nGlobal + (t - nGlobal) mod nLocal
 *   slots [nSlot, nSlot + maxArchive)       top-k only: keys evicted from the ring, in eviction order
 *
 * So the K/V memory is nGlobal + nLocal slots (plus the archive), no more. Why that is enough: a
 * chunk writes tokens [a, b), b - a <= min(maxBatch, nLocal). A query i in it sees locally the keys
 * j with i - nLocal < j <= i, i.e. keys of the chunk itself and keys in (a - nLocal, a), which the
 * ring holds before the chunk. The native engine attends a chunk before writing it (its own keys
 * come straight from the forward pass), so the chunk may overwrite ring keys its earlier queries
 * still see; within the chunk the ring slots are distinct because b - a <= nLocal.
 *
 * Vanilla mode: token t takes slot t, up to maxContext slots.
 *
 * The slot table only changes through commit(), after the native eval succeeded; plan() has no
 * side effects, so an aborted or failed chunk leaves the policy as it was.
 */
import { InvalidArgumentError } from '../errors';
import type { LambdaMask } from '../attention/rule';
import type { NativeEvalBatch } from '../native/types';

export interface LambdaCacheOptions {
  mode: 'lambda';
  /** Pinned slots for the stream's first tokens (>= 0). */
  nGlobal: number;
  /** Local window (>= 1). */
  nLocal: number;
  /** Distance cap of the global branch (>= 0). */
  limitDistance: number;
  /** Largest number of tokens per plan() (>= 1); at most nLocal are used. */
  maxBatch: number;
  /** Top-k middle attention: evicted non-global keys go to an archive of at most maxArchive slots. */
  topK?: { k: number; insertAt: number; maxArchive: number };
}

export interface VanillaCacheOptions {
  mode: 'vanilla';
  /** Slots, and so the longest stream (>= 1). */
  maxContext: number;
  maxBatch: number;
}

export type KvCacheOptions = LambdaCacheOptions | VanillaCacheOptions;

/** What to allocate: fixed for the life of the cache. */
export interface KvCacheSize {
  /** Ring (and pinned) slots, or the vanilla maximum. */
  nSlot: number;
  /** Archive slots after nSlot (top-k only, else 0). */
  nArchive: number;
  maxBatch: number;
}

/** The slot-table fields of one NativeEvalBatch, for `n` tokens appended at the end of the stream. */
export interface KvCachePlan {
  /** Stream index of the first token (tokenCount before the batch). */
  start: number;
  n: number;
  positions: BigInt64Array;
  slots: Int32Array;
  /** [src0, dst0, src1, dst1, ...]: ring slot → archive slot, done before the batch is written. */
  archiveCopies: Int32Array;
  /** Position of every slot (nSlot + nArchive entries) after the batch is written; -1 = empty. */
  slotPositions: BigInt64Array;
  /** Position of every slot while the batch attends, i.e. before it (what the native batch gets). */
  attendedSlotPositions: BigInt64Array;
  mask: LambdaMask;
  topK: { k: number; insertAt: number };
  /** Archive slots in use after the batch. */
  archiveUsed: number;
}

function fail(message: string): never {
  throw new InvalidArgumentError(message);
}

function checkInt(value: number, name: string, min: number, max = 2 ** 31 - 1): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    fail(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
}

/** The slot table of one session's stream. */
export class KvCache {
  readonly options: Readonly<KvCacheOptions>;
  readonly size: Readonly<KvCacheSize>;
  /** Absolute position of the stream's first token. */
  readonly origin = 0;
  private readonly mask: LambdaMask;
  private readonly topK: { k: number; insertAt: number };
  private slotPos: BigInt64Array;
  // The table the next plan() writes (double buffering with slotPos).
  private spare: BigInt64Array;
  private count = 0;
  private archived = 0;

  constructor(options: KvCacheOptions) {
    if (options === null || typeof options !== 'object') fail('cache options must be an object');
    checkInt(options.maxBatch, 'maxBatch', 1);
    if (options.mode === 'vanilla') {
      checkInt(options.maxContext, 'maxContext', 1);
      this.size = { nSlot: options.maxContext, nArchive: 0, maxBatch: Math.min(options.maxBatch, options.maxContext) };
      this.mask = { lambda: false, origin: 0, nGlobal: 0, nLocal: 1, limitDistance: 0 };
      this.topK = { k: 0, insertAt: 0 };
    } else if (options.mode === 'lambda') {
      checkInt(options.nGlobal, 'nGlobal', 0);
      checkInt(options.nLocal, 'nLocal', 1);
      checkInt(options.limitDistance, 'limitDistance', 0);
      const nSlot = options.nGlobal + options.nLocal;
      if (nSlot > 2 ** 31 - 1) fail(`nGlobal + nLocal = ${nSlot} slots is too many`);
      let nArchive = 0;
      this.topK = { k: 0, insertAt: 0 };
      if (options.topK !== undefined) {
        checkInt(options.topK.k, 'topK.k', 1);
        checkInt(options.topK.insertAt, 'topK.insertAt', 0);
        checkInt(options.topK.maxArchive, 'topK.maxArchive', 1, 2 ** 31 - 1 - nSlot);
        nArchive = options.topK.maxArchive;
        this.topK = { k: options.topK.k, insertAt: options.topK.insertAt };
      }
      // A chunk longer than the ring would write some ring slot twice.
      this.size = { nSlot, nArchive, maxBatch: Math.min(options.maxBatch, options.nLocal) };
      this.mask = {
        lambda: true,
        origin: this.origin,
        nGlobal: options.nGlobal,
        nLocal: options.nLocal,
        limitDistance: options.limitDistance,
      };
    } else {
      fail(`cache mode must be 'lambda' or 'vanilla', got ${String((options as { mode?: unknown }).mode)}`);
    }
    this.options = { ...options };
    this.slotPos = new BigInt64Array(this.size.nSlot + this.size.nArchive).fill(-1n);
    this.spare = new BigInt64Array(this.slotPos.length);
  }

  /** Tokens written so far. */
  get tokenCount(): number {
    return this.count;
  }

  /** Absolute position the next token takes. */
  get nextPosition(): number {
    return this.origin + this.count;
  }

  /** Archive slots in use (top-k mode); grows by one for every token evicted from the ring. */
  get archiveUsed(): number {
    return this.archived;
  }

  /** The mask every batch of this cache carries. */
  get lambdaMask(): Readonly<LambdaMask> {
    return this.mask;
  }

  /** A copy of the current slot positions (nSlot + nArchive entries; -1 = empty). */
  slotPositions(): BigInt64Array {
    return this.slotPos.slice();
  }

  /**
   * How many more tokens fit: Infinity in Λ mode without top-k, the free slots in vanilla mode, and
   * in top-k mode the tokens that can be appended before the archive overflows.
   */
  remaining(): number {
    const o = this.options;
    if (o.mode === 'vanilla') return o.maxContext - this.count;
    if (o.topK === undefined) return Infinity;
    // Every token after the first nSlot evicts one key into the archive.
    const ring = this.size.nSlot - o.nGlobal;
    const evictionFree = Math.max(0, o.nGlobal + ring - this.count);
    return evictionFree + (o.topK.maxArchive - this.archived);
  }

  /**
   * Throws InvalidArgumentError, saying which limit and how to raise it, unless n more tokens fit
   * (vanilla: maxContext; top-k: maxArchive).
   */
  checkFits(n: number): void {
    const o = this.options;
    if (o.mode === 'vanilla' && this.count + n > o.maxContext)
      fail(
        `the stream would grow to ${this.count + n} tokens, past maxContext = ${o.maxContext} of this vanilla session; ` +
          'create the session with a larger maxContext, or use Λ attention',
      );
    const left = this.remaining();
    if (n > left)
      fail(
        `top-k attention's archive is full: maxArchive = ${(o as LambdaCacheOptions).topK!.maxArchive} slots hold the evicted middle keys, ` +
          `and ${n} more tokens need ${n - left} more; create the session with a larger attention.topK.maxArchive`,
      );
  }

  /** The slot of stream token t. */
  slotOf(t: number): number {
    const o = this.options;
    if (o.mode === 'vanilla' || t < o.nGlobal) return t;
    return o.nGlobal + ((t - o.nGlobal) % (this.size.nSlot - o.nGlobal));
  }

  /**
   * The slot table for appending n tokens (1 <= n <= size.maxBatch). No side effects on the cache's
   * state, but the plan's slotPositions array is reused by the next plan() and its
   * attendedSlotPositions is the live table (decoding allocates no slot table per token): use or
   * commit a plan before making the next.
   * Throws InvalidArgumentError when the tokens do not fit (vanilla: maxContext; top-k: maxArchive).
   */
  plan(n: number): KvCachePlan {
    checkInt(n, 'number of tokens in a batch', 1, this.size.maxBatch);
    this.checkFits(n);
    const o = this.options;
    const positions = new BigInt64Array(n);
    const slots = new Int32Array(n);
    const slotPositions = this.spare;
    slotPositions.set(this.slotPos);
    const copies: number[] = [];
    let archived = this.archived;
    for (let k = 0; k < n; k++) {
      const t = this.count + k;
      const position = BigInt(this.origin + t);
      const slot = this.slotOf(t);
      const evicted = slotPositions[slot];
      if (evicted >= 0n && o.mode === 'lambda' && o.topK !== undefined) {
        const dst = this.size.nSlot + archived++;
        copies.push(slot, dst);
        slotPositions[dst] = evicted;
      }
      positions[k] = position;
      slots[k] = slot;
      slotPositions[slot] = position;
    }
    return {
      start: this.count,
      n,
      positions,
      slots,
      archiveCopies: Int32Array.from(copies),
      slotPositions,
      attendedSlotPositions: this.slotPos,
      mask: { ...this.mask },
      topK: { ...this.topK },
      archiveUsed: archived,
    };
  }

  /** Records a plan as written. It must be the latest plan made from the current state. */
  commit(plan: KvCachePlan): void {
    if (plan.start !== this.count) throw new Error(`internal: cache plan for stream index ${plan.start} committed at ${this.count}`);
    if (plan.slotPositions === this.spare) {
      this.spare = this.slotPos; // the plan's table becomes the state; the old state is the next spare
      this.slotPos = plan.slotPositions;
    } else {
      this.slotPos.set(plan.slotPositions);
    }
    this.count += plan.n;
    this.archived = plan.archiveUsed;
  }
}

/** The native batch that writes `tokens` as `plan` lays them out, returning `logits` rows. */
export function evalBatch(plan: KvCachePlan, tokens: Int32Array, logits: NativeEvalBatch['logits']): NativeEvalBatch {
  return {
    tokens,
    positions: plan.positions,
    slots: plan.slots,
    archiveCopies: plan.archiveCopies,
    slotPositions: plan.attendedSlotPositions,
    mask: plan.mask,
    topK: plan.topK,
    logits,
  };
}

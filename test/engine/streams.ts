/**
 * Token streams through one native context, for tests that run the same stream under two engine
 * configurations and compare the logits (segmented vs single graph, head-major vs slot-major K/V).
 */
import type { KvCacheType, NativeContextOptions, NativeEvalBatch, NativeModel } from '../../lib/native/types';
import { randomTokens } from '../reference-forward/compare';
import { SlotTable, type Mask } from './spec-from-gguf';

export interface StreamOptions {
  total: number;
  /** Chunk sizes, cycled; 1 = a decode step. */
  chunks: number[];
  nGlobal: number;
  nLocal: number;
  kvType: KvCacheType;
  /** Logits modes, cycled per eval. */
  modes: NativeEvalBatch['logits'][];
  topK?: { k: number; insertAt: number; fromLayer: number };
  vanilla?: boolean;
  seed: number;
}

/** Every eval's logits (empty for 'none'), in order; `extra` adds testing knobs to the context's options. */
export async function stream(
  model: NativeModel,
  o: StreamOptions,
  extra: Partial<NativeContextOptions> = {},
): Promise<Float32Array[]> {
  const maxChunk = Math.max(...o.chunks);
  // Λ: a ring of nLocal slots (chunks longer than that need as many, or they would write a slot twice).
  const nSlot = o.vanilla ? o.total : o.nGlobal + Math.max(o.nLocal, maxChunk);
  const nArchive = o.topK ? o.total : 0;
  const ctx = model.createContext({
    nSlot,
    nArchive,
    topKFromLayer: o.topK ? o.topK.fromLayer : 0,
    kvType: o.kvType,
    maxBatch: maxChunk,
    threads: 2,
    ...extra,
  });
  const table = new SlotTable(nSlot, o.vanilla ? 0 : o.nGlobal, nArchive);
  const mask: Mask = o.vanilla
    ? { lambda: false, origin: 0, nGlobal: 0, nLocal: o.total, limitDistance: o.total }
    : { lambda: true, origin: 0, nGlobal: o.nGlobal, nLocal: o.nLocal, limitDistance: o.nLocal };
  const topK = o.topK ? { k: o.topK.k, insertAt: o.topK.insertAt } : { k: 0, insertAt: 0 };
  const tokens = randomTokens(o.total, o.seed);
  const out: Float32Array[] = [];
  for (let at = 0, i = 0; at < o.total; i++) {
    const size = Math.min(o.chunks[i % o.chunks.length], o.total - at);
    out.push(await ctx.eval(table.batch(tokens.slice(at, at + size), mask, o.modes[i % o.modes.length], topK)));
    at += size;
  }
  ctx.dispose();
  return out;
}

export function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  expect(b.length).toBe(a.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    expect(b[i].length).toBe(a[i].length);
    for (let j = 0; j < a[i].length; j++) {
      const d = Math.abs(a[i][j] - b[i][j]);
      if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
    }
  }
  return max;
}

/**
 * Logits of every token of `tokens`, one row each, fed in chunks of the given sizes to a fresh
 * context of tokens.length slots (no ring: nothing is overwritten).
 */
export async function chunkedLogits(
  model: NativeModel,
  tokens: number[],
  mask: Mask,
  chunks: number[],
  kvType: KvCacheType,
): Promise<Float32Array[]> {
  const n = tokens.length;
  const ctx = model.createContext({ nSlot: n, nArchive: 0, topKFromLayer: 0, kvType, maxBatch: n, threads: 2 });
  const table = new SlotTable(n, 0);
  const rows: Float32Array[] = [];
  let at = 0;
  for (const size of chunks) {
    const logits = await ctx.eval(table.batch(tokens.slice(at, at + size), mask, 'all'));
    const nVocab = logits.length / size;
    for (let r = 0; r < size; r++) rows.push(logits.slice(r * nVocab, (r + 1) * nVocab));
    at += size;
  }
  ctx.dispose();
  return rows;
}

/** log-softmax of each row, as the oracle side of logProbGap expects. */
export function logSoftmaxEach(rows: Float32Array[]): Float32Array[] {
  return rows.map((row) => {
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    const lse = max + Math.log(sum);
    return Float32Array.from(row, (v) => v - lse);
  });
}

/** Every logit equal, compared as bits (NaN never expected). */
export function expectIdentical(label: string, a: Float32Array[], b: Float32Array[]): void {
  expect(b.length).toBe(a.length);
  let rows = 0;
  let differing = 0;
  for (let i = 0; i < a.length; i++) {
    expect(b[i].length).toBe(a[i].length);
    const x = new Uint32Array(a[i].buffer, a[i].byteOffset, a[i].length);
    const y = new Uint32Array(b[i].buffer, b[i].byteOffset, b[i].length);
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) differing++;
    rows += a[i].length;
  }
  expect({ label, differing }).toEqual({ label, differing: 0 });
  expect(rows).toBeGreaterThan(0);
}

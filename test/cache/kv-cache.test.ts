/**
 * The ring-buffer slot policy: every key the Λ rule lets a query of a chunk see is, while the chunk
 * attends, in a slot or in the chunk itself (the engine attends a chunk before writing it), and the
 * ring is nLocal slots.
 */
import { classify } from '../../lib/attention/rule';
import { KvCache, type KvCacheOptions, type KvCachePlan } from '../../lib/cache';
import { InvalidArgumentError } from '../../lib/errors';
import { Rng } from '../helpers/random';

/** Applies a plan to a model of native memory (slot → position), checking the plan's own consistency. */
function applyToMemory(memory: BigInt64Array, plan: KvCachePlan, nSlot: number): void {
  expect(Array.from(plan.attendedSlotPositions)).toEqual(Array.from(memory)); // what the chunk attends: memory before it
  for (let c = 0; c < plan.archiveCopies.length; c += 2) {
    const src = plan.archiveCopies[c];
    const dst = plan.archiveCopies[c + 1];
    expect(src).toBeLessThan(nSlot); // from the ring
    expect(dst).toBeGreaterThanOrEqual(nSlot); // to the archive
    expect(memory[dst]).toBe(-1n); // archive slots are written once
    memory[dst] = memory[src];
  }
  const written = new Set<number>();
  for (let k = 0; k < plan.n; k++) {
    expect(written.has(plan.slots[k])).toBe(false); // a chunk never writes a slot twice
    written.add(plan.slots[k]);
    expect(plan.slots[k]).toBeGreaterThanOrEqual(0);
    expect(plan.slots[k]).toBeLessThan(nSlot);
    memory[plan.slots[k]] = plan.positions[k];
  }
  expect(Array.from(memory)).toEqual(Array.from(plan.slotPositions)); // slotPositions tells the truth
}

/** For every query of the chunk, every key classify() keeps is in exactly one slot or in the chunk. */
function checkCoverage(plan: KvCachePlan, topK: boolean): void {
  const where = new Map<bigint, string>();
  plan.attendedSlotPositions.forEach((p, s) => {
    if (p < 0n) return;
    expect(where.has(p)).toBe(false); // no position twice
    expect(p < plan.positions[0]).toBe(true); // the engine requires slots older than the chunk
    where.set(p, `slot ${s}`);
  });
  for (const p of plan.positions) {
    expect(where.has(p)).toBe(false);
    where.set(p, 'chunk');
  }
  for (let k = 0; k < plan.n; k++) {
    const i = Number(plan.positions[k]);
    for (let j = 0; j <= i; j++) {
      const branch = classify(i, j, plan.mask);
      const needed = branch === 'local' || branch === 'global' || (topK && branch === 'middle');
      if (needed && !where.has(BigInt(j))) throw new Error(`query ${i} attends key ${j} (${branch}) but no slot holds it`);
    }
  }
}

function runStream(options: KvCacheOptions, chunks: number[]): KvCache {
  const cache = new KvCache(options);
  const { nSlot, nArchive } = cache.size;
  const memory = new BigInt64Array(nSlot + nArchive).fill(-1n);
  for (const n of chunks) {
    const plan = cache.plan(n);
    expect(plan.start).toBe(cache.tokenCount);
    expect(Array.from(plan.positions)).toEqual(Array.from({ length: n }, (_, k) => BigInt(cache.tokenCount + k)));
    applyToMemory(memory, plan, nSlot);
    checkCoverage(plan, options.mode === 'lambda' && options.topK !== undefined);
    cache.commit(plan);
    expect(cache.size).toEqual({ nSlot, nArchive, maxBatch: cache.size.maxBatch }); // memory fixed
  }
  return cache;
}

describe('KvCache, Λ mode', () => {
  test('layout: pinned globals, then a ring of nLocal slots', () => {
    const cache = new KvCache({ mode: 'lambda', nGlobal: 2, nLocal: 4, limitDistance: 4, maxBatch: 3 });
    expect(cache.size).toEqual({ nSlot: 6, nArchive: 0, maxBatch: 3 });
    const slots = Array.from({ length: 20 }, (_, t) => cache.slotOf(t));
    expect(slots).toEqual([0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 2, 3, 4, 5, 2, 3, 4, 5, 2, 3]);
    const p = cache.plan(3);
    expect(Array.from(p.slots)).toEqual([0, 1, 2]);
    expect(Array.from(p.slotPositions)).toEqual([0n, 1n, 2n, -1n, -1n, -1n]);
    expect(Array.from(p.attendedSlotPositions)).toEqual([-1n, -1n, -1n, -1n, -1n, -1n]);
    expect(p.mask).toEqual({ lambda: true, origin: 0, nGlobal: 2, nLocal: 4, limitDistance: 4 });
    expect(p.topK).toEqual({ k: 0, insertAt: 0 });
    expect(p.archiveCopies.length).toBe(0);
  });

  test('a hand-checked wrap-around', () => {
    const cache = new KvCache({ mode: 'lambda', nGlobal: 1, nLocal: 2, limitDistance: 2, maxBatch: 2 });
    // nSlot = 1 + 2 = 3; ring slots 1..2
    for (const n of [2, 2, 1]) cache.commit(cache.plan(n));
    const p = cache.plan(2); // tokens 5, 6 → slots 1, 2 (held 3, 4)
    expect(Array.from(p.slots)).toEqual([1, 2]);
    expect(Array.from(p.attendedSlotPositions)).toEqual([0n, 3n, 4n]);
    expect(Array.from(p.slotPositions)).toEqual([0n, 5n, 6n]);
    // Query 5 sees 4 (slot 2, overwritten by token 6 only after the chunk attended) and itself
    // locally, 0 globally; query 6 sees 5 and itself (the chunk) and 0.
  });

  test('plan() has no side effects; commit() advances', () => {
    const cache = new KvCache({ mode: 'lambda', nGlobal: 0, nLocal: 3, limitDistance: 3, maxBatch: 2 });
    const a = cache.plan(2);
    const b = cache.plan(2);
    expect(a).toEqual(b);
    expect(cache.tokenCount).toBe(0);
    cache.commit(a);
    expect(cache.tokenCount).toBe(2);
    expect(cache.nextPosition).toBe(2);
    expect(() => cache.commit(b)).toThrow(/internal/);
  });

  test('randomized streams: every attended key is in a slot (fixed seed)', () => {
    const rng = new Rng(20240607);
    for (let trial = 0; trial < 120; trial++) {
      const nLocal = rng.int(1, 24);
      const maxBatch = rng.int(1, 12);
      const options: KvCacheOptions = {
        mode: 'lambda',
        nGlobal: rng.pick([0, 1, 3, 10]),
        nLocal,
        limitDistance: rng.int(0, nLocal * 2),
        maxBatch,
      };
      const chunks = Array.from({ length: rng.int(1, 30) }, () => rng.int(1, Math.min(maxBatch, nLocal)));
      const cache = runStream(options, chunks);
      expect(cache.size.nSlot).toBe(options.nGlobal + nLocal);
      expect(cache.size.maxBatch).toBe(Math.min(maxBatch, nLocal));
      expect(cache.tokenCount).toBe(chunks.reduce((a, b) => a + b, 0));
      expect(cache.remaining()).toBe(Infinity);
    }
  });
});

describe('KvCache, top-k archive', () => {
  test('evicted keys move to the archive, in order, with copy instructions', () => {
    const cache = new KvCache({ mode: 'lambda', nGlobal: 1, nLocal: 2, limitDistance: 2, maxBatch: 1, topK: { k: 2, insertAt: 1, maxArchive: 3 } });
    expect(cache.size).toEqual({ nSlot: 3, nArchive: 3, maxBatch: 1 });
    for (let t = 0; t < 3; t++) {
      const p = cache.plan(1);
      expect(p.archiveCopies.length).toBe(0);
      cache.commit(p);
    }
    const p = cache.plan(1); // token 3 → slot 1 (held 1) → archive slot 3
    expect(Array.from(p.archiveCopies)).toEqual([1, 3]);
    expect(Array.from(p.attendedSlotPositions)).toEqual([0n, 1n, 2n, -1n, -1n, -1n]);
    expect(Array.from(p.slotPositions)).toEqual([0n, 3n, 2n, 1n, -1n, -1n]);
    expect(p.topK).toEqual({ k: 2, insertAt: 1 });
    cache.commit(p);
    expect(cache.archiveUsed).toBe(1);
    expect(cache.remaining()).toBe(2);
    cache.commit(cache.plan(1));
    cache.commit(cache.plan(1));
    expect(cache.archiveUsed).toBe(3);
    expect(() => cache.plan(1)).toThrow(InvalidArgumentError);
    expect(() => cache.plan(1)).toThrow(/maxArchive/);
  });

  test('remaining() is exact: the archive overflows on the token after it', () => {
    for (const maxArchive of [1, 4, 9]) {
      const cache = new KvCache({ mode: 'lambda', nGlobal: 2, nLocal: 3, limitDistance: 3, maxBatch: 2, topK: { k: 1, insertAt: 0, maxArchive } });
      const budget = cache.remaining();
      expect(budget).toBe(cache.size.nSlot + maxArchive);
      for (let t = 0; t < budget; t++) cache.commit(cache.plan(1));
      expect(cache.archiveUsed).toBe(maxArchive);
      expect(() => cache.plan(1)).toThrow(/archive is full/);
    }
  });

  test('randomized: global, local and middle keys all stay reachable', () => {
    const rng = new Rng(77);
    for (let trial = 0; trial < 60; trial++) {
      const nLocal = rng.int(1, 16);
      const maxBatch = rng.int(1, 8);
      const chunks = Array.from({ length: rng.int(1, 20) }, () => rng.int(1, Math.min(maxBatch, nLocal)));
      const total = chunks.reduce((a, b) => a + b, 0);
      const options: KvCacheOptions = {
        mode: 'lambda',
        nGlobal: rng.pick([0, 2, 5]),
        nLocal,
        limitDistance: nLocal,
        maxBatch,
        topK: { k: 3, insertAt: 1, maxArchive: total + 1 },
      };
      const cache = runStream(options, chunks);
      const ring = cache.size.nSlot - (options as { nGlobal: number }).nGlobal;
      expect(cache.archiveUsed).toBe(Math.max(0, total - cache.size.nSlot));
      expect(ring).toBe(nLocal);
    }
  });
});

describe('KvCache, vanilla mode', () => {
  test('slot t for token t, up to maxContext, then a typed error that changes nothing', () => {
    const cache = new KvCache({ mode: 'vanilla', maxContext: 5, maxBatch: 4 });
    expect(cache.size).toEqual({ nSlot: 5, nArchive: 0, maxBatch: 4 });
    const p = cache.plan(4);
    expect(Array.from(p.slots)).toEqual([0, 1, 2, 3]);
    expect(p.mask.lambda).toBe(false);
    cache.commit(p);
    expect(cache.remaining()).toBe(1);
    expect(() => cache.plan(2)).toThrow(InvalidArgumentError);
    expect(() => cache.plan(2)).toThrow(/maxContext = 5/);
    expect(cache.tokenCount).toBe(4);
    cache.commit(cache.plan(1));
    expect(cache.remaining()).toBe(0);
  });

  test('randomized coverage: vanilla sees the whole history', () => {
    const rng = new Rng(5);
    for (let trial = 0; trial < 30; trial++) {
      const maxBatch = rng.int(1, 6);
      const chunks = Array.from({ length: rng.int(1, 10) }, () => rng.int(1, maxBatch));
      runStream({ mode: 'vanilla', maxContext: 60, maxBatch }, chunks);
    }
  });
});

describe('KvCache option checks', () => {
  test.each([
    [{ mode: 'lambda', nGlobal: 0, nLocal: 0, limitDistance: 0, maxBatch: 1 }, /nLocal/],
    [{ mode: 'lambda', nGlobal: -1, nLocal: 4, limitDistance: 0, maxBatch: 1 }, /nGlobal/],
    [{ mode: 'lambda', nGlobal: 0, nLocal: 4, limitDistance: NaN, maxBatch: 1 }, /limitDistance/],
    [{ mode: 'lambda', nGlobal: 0, nLocal: 4, limitDistance: 4, maxBatch: 0 }, /maxBatch/],
    [{ mode: 'lambda', nGlobal: 0, nLocal: 4, limitDistance: 4, maxBatch: 1, topK: { k: 0, insertAt: 1, maxArchive: 1 } }, /topK\.k/],
    [{ mode: 'lambda', nGlobal: 0, nLocal: 4, limitDistance: 4, maxBatch: 1, topK: { k: 1, insertAt: 1, maxArchive: 0 } }, /maxArchive/],
    [{ mode: 'vanilla', maxContext: 0, maxBatch: 1 }, /maxContext/],
    [{ mode: 'other', maxBatch: 1 }, /mode/],
  ])('%j', (options, message) => {
    expect(() => new KvCache(options as KvCacheOptions)).toThrow(InvalidArgumentError);
    expect(() => new KvCache(options as KvCacheOptions)).toThrow(message);
  });

  test('a chunk never exceeds the ring: maxBatch is capped at nLocal', () => {
    const cache = new KvCache({ mode: 'lambda', nGlobal: 1, nLocal: 3, limitDistance: 3, maxBatch: 8 });
    expect(cache.size).toEqual({ nSlot: 4, nArchive: 0, maxBatch: 3 });
    expect(() => cache.plan(4)).toThrow(InvalidArgumentError);
    expect(Array.from(cache.plan(3).slots)).toEqual([0, 1, 2]);
  });

  test('a batch larger than maxBatch is refused', () => {
    const cache = new KvCache({ mode: 'lambda', nGlobal: 0, nLocal: 4, limitDistance: 4, maxBatch: 2 });
    expect(() => cache.plan(3)).toThrow(InvalidArgumentError);
    expect(() => cache.plan(0)).toThrow(InvalidArgumentError);
  });
});

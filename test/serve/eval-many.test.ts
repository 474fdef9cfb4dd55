/**
 * NativeModel.evalMany: the batches of several contexts as one forward pass must give the logits
 * separate evals give, sequence by sequence, through ring wrap-around, mixed K/V types, top-k
 * archives and chunks of different sizes and logits modes. stories260K (LMI_FIXTURES).
 */
import * as fs from 'fs';
import * as path from 'path';

import { evalBatch, KvCache, type KvCacheOptions } from '../../lib/cache';
import { describeModelFile } from '../../lib/model';
import { loadAddon } from '../../lib/native/addon';
import type { NativeContext, NativeEvalBatch, NativeModel } from '../../lib/native/types';
import { fixturesDir, stories260K } from '../model/fixtures';

let native: Required<NativeModel>;
let text: number[];

beforeAll(async () => {
  const addon = await loadAddon();
  const { spec, tokenizer } = await describeModelFile(stories260K(), 2);
  const loaded = await addon.loadModel(spec);
  if (typeof loaded.evalMany !== 'function') throw new Error('the native addon has no evalMany: rebuild it (npm run build:native)');
  native = loaded as Required<NativeModel>;
  const story = fs.readFileSync(path.join(fixturesDir(), 'text', 'tinystories_val.txt'), 'utf8').slice(0, 20000);
  text = tokenizer.encode(story, { addSpecial: true });
});

afterAll(() => native?.dispose());

interface Seq {
  cache: KvCache;
  ctx: NativeContext;
  kvType: 'f16' | 'f32';
  topKFromLayer: number;
}

function makeSeq(o: KvCacheOptions, kvType: 'f16' | 'f32', topKFromLayer = 5): Seq {
  const cache = new KvCache(o);
  const { nSlot, nArchive, maxBatch } = cache.size;
  return { cache, kvType, topKFromLayer, ctx: native.createContext({ nSlot, nArchive, topKFromLayer, kvType, maxBatch, threads: 2 }) };
}


const maxAbsDiff = (a: Float32Array, b: Float32Array) => {
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k] - b[k]));
  return m;
};

/** Deterministic pseudo-random integers. */
function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

const configs: { o: KvCacheOptions; kv: 'f16' | 'f32'; topKFromLayer?: number }[] = [
  { o: { mode: 'lambda', nGlobal: 4, nLocal: 24, limitDistance: 24, maxBatch: 8 }, kv: 'f32' },
  { o: { mode: 'lambda', nGlobal: 10, nLocal: 64, limitDistance: 64, maxBatch: 16 }, kv: 'f16' },
  { o: { mode: 'vanilla', maxContext: 400, maxBatch: 12 }, kv: 'f32' },
  { o: { mode: 'lambda', nGlobal: 2, nLocal: 16, limitDistance: 16, maxBatch: 8, topK: { k: 3, insertAt: 8, maxArchive: 400 } }, kv: 'f32', topKFromLayer: 3 },
  { o: { mode: 'lambda', nGlobal: 4, nLocal: 32, limitDistance: 32, maxBatch: 4 }, kv: 'f16' },
];

test('evalMany logits equal separate evals (5 sequences, ~200 steps, wrap-around, top-k, f16/f32)', async () => {
  const alone = configs.map((c) => makeSeq(c.o, c.kv, c.topKFromLayer));
  const batched = configs.map((c) => makeSeq(c.o, c.kv, c.topKFromLayer));
  const rnd = lcg(7);
  const cursor = configs.map((_, s) => 37 * s); // each sequence reads its own part of the story
  let worst = 0;
  let compared = 0;
  for (let step = 0; step < 60; step++) {
    // a random subset of the sequences takes part in each step, each with its own chunk size and mode
    const items: { s: number; tokens: Int32Array; logits: NativeEvalBatch['logits'] }[] = [];
    for (let s = 0; s < configs.length; s++) {
      if (step > 0 && rnd(4) === 0) continue;
      const n = step % 7 === 0 ? alone[s].cache.size.maxBatch : 1 + rnd(alone[s].cache.size.maxBatch);
      const tokens = Int32Array.from(text.slice(cursor[s], cursor[s] + n));
      cursor[s] += n;
      const logits = (['all', 'last', 'none'] as const)[rnd(3)];
      items.push({ s, tokens, logits });
    }
    if (items.length === 0) continue;
    const plansA = items.map((it) => alone[it.s].cache.plan(it.tokens.length));
    const plansB = items.map((it) => batched[it.s].cache.plan(it.tokens.length));
    const want: Float32Array[] = [];
    for (let k = 0; k < items.length; k++) want.push(await alone[items[k].s].ctx.eval(evalBatch(plansA[k], items[k].tokens, items[k].logits)));
    const got = await native.evalMany(items.map((it, k) => ({ context: batched[it.s].ctx, batch: evalBatch(plansB[k], it.tokens, it.logits) })));
    expect(got.length).toBe(items.length);
    for (let k = 0; k < items.length; k++) {
      expect(got[k].length).toBe(want[k].length);
      worst = Math.max(worst, maxAbsDiff(got[k], want[k]));
      compared += got[k].length;
      alone[items[k].s].cache.commit(plansA[k]);
      batched[items[k].s].cache.commit(plansB[k]);
    }
  }
  if (process.env.LMI_VERBOSE) console.log(`evalMany vs eval: max abs logit diff ${worst} over ${compared} logits`);
  expect(compared).toBeGreaterThan(100_000);
  expect(worst).toBeLessThan(2e-4);
  for (const q of [...alone, ...batched]) q.ctx.dispose();
});

test('evalMany keeps matching eval while more shapes pass than its graph cache holds (eviction, memory reuse)', async () => {
  const o: KvCacheOptions = { mode: 'lambda', nGlobal: 4, nLocal: 64, limitDistance: 32, maxBatch: 64 };
  const a = makeSeq(o, 'f32');
  const b = makeSeq(o, 'f32');
  let at = 0;
  let worst = 0;
  for (let round = 0; round < 2; round++)
    for (let n = 1; n <= 60; n++) {
      const tokens = Int32Array.from(text.slice(at % 15000, (at % 15000) + n));
      at += n;
      const pa = a.cache.plan(n);
      const pb = b.cache.plan(n);
      const want = await a.ctx.eval(evalBatch(pa, tokens, 'last'));
      const [got] = await native.evalMany([{ context: b.ctx, batch: evalBatch(pb, tokens, 'last') }]);
      worst = Math.max(worst, maxAbsDiff(got, want));
      a.cache.commit(pa);
      b.cache.commit(pb);
    }
  expect(worst).toBeLessThan(2e-4);
  a.ctx.dispose();
  b.ctx.dispose();
});

test('evalMany refuses duplicates, busy, disposed and foreign contexts, and bad batches, before running', async () => {
  const a = makeSeq({ mode: 'lambda', nGlobal: 4, nLocal: 16, limitDistance: 16, maxBatch: 4 }, 'f16');
  const b = makeSeq({ mode: 'lambda', nGlobal: 4, nLocal: 16, limitDistance: 16, maxBatch: 4 }, 'f16');
  const tok = Int32Array.of(1, 403);
  const item = (q: Seq) => ({ context: q.ctx, batch: evalBatch(q.cache.plan(2), tok, 'last') });
  await expect(native.evalMany([item(a), item(a)])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  await expect(native.evalMany([])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  await expect(native.evalMany([{ context: {} as NativeContext, batch: item(a).batch }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  const bad = item(b);
  bad.batch.tokens = Int32Array.of(1, 100000);
  await expect(native.evalMany([item(a), bad])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('items[1]') });

  // busy: a context in an evalMany cannot eval, nor join a second evalMany
  const running = native.evalMany([item(a)]);
  await expect(a.ctx.eval(item(a).batch)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  await expect(native.evalMany([item(b)])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  const [out] = await running;
  expect(out.length).toBe(512);

  // another model's context
  const { spec } = await describeModelFile(stories260K(), 1);
  const other = await (await loadAddon()).loadModel(spec);
  const foreign = other.createContext({ nSlot: 24, nArchive: 0, topKFromLayer: 5, kvType: 'f16', maxBatch: 4, threads: 1 });
  await expect(native.evalMany([{ context: foreign, batch: item(a).batch }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  foreign.dispose();
  other.dispose();

  b.ctx.dispose();
  await expect(native.evalMany([item(a), { context: b.ctx, batch: item(a).batch }])).rejects.toMatchObject({ code: 'DISPOSED' });
  // a context disposed while its evalMany runs is freed when it finishes
  const p = native.evalMany([item(a)]);
  a.ctx.dispose();
  expect((await p)[0].length).toBe(512);
});

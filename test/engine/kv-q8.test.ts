/**
 * The 8-bit K/V cache (kvType 'q8_0': ggml's Q8_0 blocks, 34 bytes per 32 values).
 *
 * - Against the reference forward pass (test/reference/forward) rounding each token's K and V rows
 *   through Q8_0 blocks itself: on F32 weights the engine must match it far more closely than it
 *   matches the unrounded (f32-cache) reference, so the cache really holds 8-bit rows and attends
 *   exactly what they stand for. Vanilla, Λ with a wrapping window, and top-k middle attention
 *   (whose archive copies 8-bit rows). The engine's CPU cache holds RoPE keys turned by
 *   R(position mod 64) (attn::Problem::keyTurnPeriod), so the reference rounds them so too
 *   (KEY_TURN); rounding them un-turned instead is far off (0.03), which the test also checks.
 * - Head-major and slot-major caches give the same bits (prefill chunks and decode steps through a
 *   wrapping ring, the segmented pass), and so do the segmented pass and the single graph; evalMany
 *   agrees with a sequence's own context.
 * - Memory: 34/64 of an f16 cache.
 * - Models whose head dimension is not a multiple of 32 are refused with a typed error.
 */
import { parseGguf } from '../../lib/gguf';
import { loadModel } from '../../lib/model';
import { loadAddon } from '../../lib/native/addon';
import type { NativeAddon, NativeModel } from '../../lib/native/types';
import { fixturePath, STORIES } from '../gguf/helpers';
import { makeSyntheticModel, writeSyntheticModel, type SyntheticModelOptions } from '../helpers/synthetic-models';
import { ReferenceModel, type ReferenceForwardOptions } from '../reference/forward';
import { logProbGap, randomTokens } from '../reference-forward/compare';
import { SlotTable, specFromGguf, type Mask } from './spec-from-gguf';
import { chunkedLogits, expectIdentical, logSoftmaxEach, stream } from './streams';

const N = 64;
// The engine's CPU K/V cache stores RoPE keys turned by R(position mod 64) (native/engine/src/key_turn.h).
const KEY_TURN = 64;
const TOKENS = randomTokens(N, 8);
const LAMBDA = { nGlobal: 4, nLocal: 16, limitDistance: 16 };
// 4 query heads of 32 dims over 2 KV heads: each K/V head row is one Q8_0 block.
const OPTIONS: SyntheticModelOptions = { seed: 31, nEmbd: 128, nLayer: 2, nHead: 4, nHeadKV: 2, nFF: 128, nCtx: 256, weightType: 'F32' };

describe("kvType 'q8_0'", () => {
  let addon: NativeAddon;
  let model: NativeModel;
  let reference: ReferenceModel;
  beforeAll(async () => {
    addon = await loadAddon();
    model = await addon.loadModel(await specFromGguf(writeSyntheticModel('llama', OPTIONS), 2));
    const bytes = makeSyntheticModel('llama', OPTIONS);
    reference = new ReferenceModel(parseGguf(bytes), bytes);
  });
  afterAll(() => model?.dispose());

  test.each([
    ['vanilla', { lambda: false, origin: 0, nGlobal: 0, nLocal: N, limitDistance: N } as Mask, [N], 'vanilla' as const],
    ['Λ, window 16 of 64', { lambda: true, origin: 0, ...LAMBDA } as Mask, [5, 1, 20, 1, 37], LAMBDA],
  ])('%s: matches the reference that rounds K/V through Q8_0 blocks', async (label, mask, chunks, attention) => {
    const ref = (kvType: ReferenceForwardOptions['kvType'], keyTurnPeriod = KEY_TURN) =>
      reference.forward(TOKENS, { attention, kvType, keyTurnPeriod });
    const got = logSoftmaxEach(await chunkedLogits(model, TOKENS, mask, chunks, 'q8_0'));
    const toQ8 = logProbGap(ref('q8_0'), got);
    // The rounding of un-turned rows is not what the cache holds.
    const toQ8Unturned = logProbGap(ref('q8_0', 0), got);
    expect({ label, max: toQ8Unturned.max, ok: toQ8.max * 10 < toQ8Unturned.max }).toEqual({
      label, max: toQ8Unturned.max, ok: true,
    });
    const toF32 = logProbGap(ref('f32'), got);
    expect(toQ8.spread).toBeGreaterThan(8);
    // Measured: max 2.2e-6 against the Q8_0 reference (3.4e-2 rounding un-turned keys), 4.7e-2
    // against the unrounded one. The
    // engine's quantizer (ggml's SIMD row quantizer) could round a value on a tie the other way: 2e-4.
    expect({ label, max: toQ8.max, ok: toQ8.max < 2e-4 }).toEqual({ label, max: toQ8.max, ok: true });
    expect({ label, ratio: toQ8.max / toF32.max, ok: toQ8.max * 100 < toF32.max }).toEqual({
      label, ratio: toQ8.max / toF32.max, ok: true,
    });
    // And the f32 cache is the unrounded reference (the comparison above is not loose).
    const f32 = logProbGap(ref('f32'), logSoftmaxEach(await chunkedLogits(model, TOKENS, mask, chunks, 'f32')));
    expect(f32.max).toBeLessThan(1e-3);
  });

  test('top-k middle attention through the archive matches the reference with Q8_0 rows', async () => {
    // The archive copies 8-bit rows piece by piece (kv_cache.h): the kept middle keys must still be
    // the reference's, at the reference's values.
    const o = { nGlobal: 4, nLocal: 24, seed: 6, total: 96, chunks: [8], kvType: 'q8_0' as const, modes: ['all' as const], topK: { k: 3, insertAt: 8, fromLayer: 1 } };
    const rows: Float32Array[] = [];
    for (const logits of await stream(model, o)) {
      const nVocab = logits.length / 8;
      for (let r = 0; r < 8; r++) rows.push(logits.slice(r * nVocab, (r + 1) * nVocab));
    }
    const attention = { nGlobal: 4, nLocal: 24, limitDistance: 24, topK: o.topK };
    const tokens = randomTokens(o.total, o.seed);
    const gap = logProbGap(reference.forward(tokens, { attention, kvType: 'q8_0', keyTurnPeriod: KEY_TURN }), logSoftmaxEach(rows));
    const unrounded = logProbGap(reference.forward(tokens, { attention, kvType: 'f32' }), logSoftmaxEach(rows));
    expect(gap.spread).toBeGreaterThan(8);
    // Measured 2.7e-6, against 0.52 to the unrounded reference (whose kept middle keys differ).
    expect({ max: gap.max, ok: gap.max < 2e-4 && gap.max * 100 < unrounded.max }).toEqual({ max: gap.max, ok: true });
  });

  test('head-major == slot-major and segmented == single graph, bit for bit; evalMany', async () => {
    const ring = { nGlobal: 4, nLocal: 24, seed: 3, total: 160, chunks: [30, 1, 1, 7, 1, 12], kvType: 'q8_0' as const };
    const heads: Float32Array[][] = [];
    for (const extra of [{}, { segmented: true }]) {
      const head = await stream(model, { ...ring, modes: ['all', 'last'] }, extra);
      const slot = await stream(model, { ...ring, modes: ['all', 'last'] }, { ...extra, slotMajorKV: true });
      expectIdentical(`ring ${JSON.stringify(extra)}`, head, slot);
      heads.push(head);
    }
    // The segmented pass quantizes its rows with the same ggml row function as the single graph.
    expectIdentical('segmented vs single graph', heads[0], heads[1]);
    // evalMany converts and writes each sequence's rows itself.
    const opts = { nSlot: 28, nArchive: 0, topKFromLayer: 0, kvType: 'q8_0' as const, maxBatch: 8, threads: 2 };
    const mask: Mask = { lambda: true, origin: 0, nGlobal: 4, nLocal: 24, limitDistance: 24 };
    const tokens = [randomTokens(60, 11), randomTokens(60, 12)];
    const many = async (slotMajorKV: boolean): Promise<Float32Array[]> => {
      const ctxs = tokens.map(() => model.createContext({ ...opts, slotMajorKV }));
      const tables = ctxs.map(() => new SlotTable(28, 4));
      const out: Float32Array[] = [];
      for (let at = 0, i = 0; at < 60; i++) {
        const size = [8, 1, 3][i % 3];
        out.push(...(await model.evalMany!(ctxs.map((context, s) => ({ context, batch: tables[s].batch(tokens[s].slice(at, at + size), mask, 'all') })))));
        at += size;
      }
      ctxs.forEach((c) => c.dispose());
      return out;
    };
    const single = async (): Promise<Float32Array[]> => {
      const ctx = model.createContext(opts);
      const table = new SlotTable(28, 4);
      const out: Float32Array[] = [];
      for (let at = 0, i = 0; at < 60; i++) {
        const size = [8, 1, 3][i % 3];
        out.push(await ctx.eval(table.batch(tokens[0].slice(at, at + size), mask, 'all')));
        at += size;
      }
      ctx.dispose();
      return out;
    };
    const head = await many(false);
    expectIdentical('evalMany slot-major', head, await many(true));
    // Batch composition changes the matmuls' rounding, so the two are close, not identical: rows
    // converted wrongly (or not at all) would move the logits by far more.
    const alone = await single();
    let worst = 0;
    head.filter((_, i) => i % 2 === 0).forEach((row, i) => row.forEach((x, j) => { worst = Math.max(worst, Math.abs(x - alone[i][j])); }));
    expect(worst).toBeLessThan(1e-4);  // measured 1.7e-6
  });

  test('a session keeps 34/64 of the f16 cache; score and multi-token decode runs work on it', async () => {
    const m = await loadModel(writeSyntheticModel('llama', OPTIONS), { threads: 1 });
    try {
      const session = (kvType: 'f16' | 'q8_0') => m.createSession({ attention: { nGlobal: 4, nLocal: 24 }, kvType, chunkSize: 16 });
      const q8 = session('q8_0');
      const f16 = session('f16');
      expect(q8.options.kvType).toBe('q8_0');
      expect(q8.kvBytes * 64).toBe(f16.kvBytes * 34);
      // 8-bit rows move the NLL a little, not a lot (the window wraps twice).
      const a = await q8.score(TOKENS);
      const b = await f16.score(TOKENS);
      expect(a.totalNll).not.toBe(b.totalNll);
      expect(Math.abs(a.totalNll - b.totalNll) / b.count).toBeLessThan(0.02);
      // Greedy tokens decoded four per native call (journalled 8-bit rows) == one per call.
      const greedy = async (tokensPerCall: number): Promise<number[]> => {
        const s = session('q8_0');
        await s.append(TOKENS);
        const out: number[] = [];
        for await (const piece of s.generate({ maxTokens: 12, temperature: 0, tokensPerCall })) out.push(piece.token);
        s.dispose();
        return out;
      };
      const many = await greedy(4);
      expect(many.length).toBeGreaterThan(0);
      expect(many).toEqual(await greedy(1));
      q8.dispose();
      f16.dispose();
    } finally {
      m.dispose();
    }
  });

  test('a head dimension that is not a multiple of 32 is refused (INVALID_ARGUMENT)', async () => {
    const stories = await addon.loadModel(await specFromGguf(fixturePath(STORIES), 1));
    try {
      let caught: unknown;
      try {
        stories.createContext({ nSlot: 16, nArchive: 0, topKFromLayer: 0, kvType: 'q8_0', maxBatch: 4, threads: 1 });
      } catch (e) {
        caught = e;
      }
      expect(caught).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/q8_0.*multiple of 32.*8/) });
    } finally {
      stories.dispose();
    }
  });
});

/**
 * Hostile specs, bad context options and bad batches must come back as rejected promises or
 * throws carrying lib/errors.ts codes, never crash the process; and the lifecycle rules: disposed
 * objects, one eval at a time per context, dispose during an eval, concurrent contexts.
 */
import { statSync } from 'node:fs';

import { loadAddon } from '../../lib/native/addon';
import type { NativeAddon, NativeContext, NativeDecodeRequest, NativeEvalBatch, NativeModel, NativeModelSpec, NativeSamplingParams } from '../../lib/native/types';
import { fixturePath, STORIES } from '../gguf/helpers';
import { argmaxRow, SlotTable, specFromGguf, vanillaMask } from './spec-from-gguf';

/** Resolves with the error's code and message, whether fn throws or its promise rejects. */
async function failure(fn: () => unknown): Promise<{ code: string; message: string }> {
  try {
    await fn();
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { code: String(e.code), message: String(e.message) };
  }
  throw new Error('expected a failure');
}

/** The promise must be a rejection, not a synchronous throw. */
function rejects(fn: () => Promise<unknown>): Promise<{ code: string; message: string }> {
  let p: Promise<unknown>;
  try {
    p = fn();
  } catch (err) {
    throw new Error(`threw synchronously instead of rejecting: ${(err as Error).message}`);
  }
  return failure(() => p);
}

const clone = (spec: NativeModelSpec): NativeModelSpec => JSON.parse(JSON.stringify(spec)) as NativeModelSpec;

describe('engine errors and lifecycle', () => {
  let addon: NativeAddon;
  let spec: NativeModelSpec;
  let model: NativeModel;

  beforeAll(async () => {
    addon = await loadAddon();
    spec = await specFromGguf(fixturePath(STORIES), 1);
    model = await addon.loadModel(spec);
  });
  afterAll(() => model?.dispose());

  const context = (overrides: Partial<Parameters<NativeModel['createContext']>[0]> = {}): NativeContext =>
    model.createContext({ nSlot: 64, nArchive: 0, topKFromLayer: 0, kvType: 'f16', maxBatch: 8, threads: 1, ...overrides });

  test('weightBytes counts every tensor', () => {
    expect(model.weightBytes()).toBe(spec.tensors.reduce((s, t) => s + t.byteLength, 0));
  });

  describe('loadModel rejects bad specs', () => {
    const tensor = (s: NativeModelSpec, name: string) => {
      const t = s.tensors.find((x) => x.name === name);
      if (!t) throw new Error(name);
      return t;
    };

    test.each([
      ['missing tensor', 'GGUF_FORMAT', /blk\.2\.ffn_up\.weight/, (s: NativeModelSpec) => {
        s.tensors = s.tensors.filter((t) => t.name !== 'blk.2.ffn_up.weight');
      }],
      ['wrong shape (byteLength consistent)', 'GGUF_FORMAT', /blk\.0\.attn_q\.weight.*shape/, (s: NativeModelSpec) => {
        const t = tensor(s, 'blk.0.attn_q.weight');
        t.dims = [64, 32];
        t.byteLength = 64 * 32 * 4;
      }],
      ['byteLength inconsistent with dims', 'GGUF_FORMAT', /output_norm\.weight/, (s: NativeModelSpec) => {
        tensor(s, 'output_norm.weight').byteLength += 4;
      }],
      ['unknown type number 99', 'UNSUPPORTED', /token_embd\.weight.*99/, (s: NativeModelSpec) => {
        tensor(s, 'token_embd.weight').type = 99;
      }],
      ['a type the engine does not compute (IQ2_XXS)', 'UNSUPPORTED', /iq2_xxs/, (s: NativeModelSpec) => {
        tensor(s, 'blk.1.attn_k.weight').type = 16;
      }],
      ['offset beyond the file', 'GGUF_FORMAT', /outside the file/, (s: NativeModelSpec) => {
        tensor(s, 'blk.4.ffn_down.weight').offset = statSync(s.path).size - 100;
      }],
      ['offset past 2^53 - 1', 'INVALID_ARGUMENT', /offset/, (s: NativeModelSpec) => {
        tensor(s, 'blk.4.ffn_down.weight').offset = 2 ** 60;
      }],
      ['misaligned f32 tensor', 'GGUF_FORMAT', /aligned/, (s: NativeModelSpec) => {
        tensor(s, 'blk.3.attn_norm.weight').offset += 2;
      }],
      ['duplicate tensor', 'GGUF_FORMAT', /twice/, (s: NativeModelSpec) => {
        s.tensors.push({ ...tensor(s, 'output.weight') });
      }],
      ['norm weight not F32', 'UNSUPPORTED', /ffn_norm.*F32/, (s: NativeModelSpec) => {
        const t = tensor(s, 'blk.0.ffn_norm.weight');
        t.type = 1; // F16, 64 elements
        t.byteLength = 128;
      }],
      ['a variant the engine does not implement (rope_freqs)', 'UNSUPPORTED', /rope_freqs/, (s: NativeModelSpec) => {
        s.tensors.push({ ...tensor(s, 'output_norm.weight'), name: 'rope_freqs.weight' });
      }],
      ['five dimensions', 'GGUF_FORMAT', /dimensions/, (s: NativeModelSpec) => {
        tensor(s, 'output_norm.weight').dims = [64, 1, 1, 1, 1];
      }],
      ['file missing', 'INVALID_ARGUMENT', /cannot open/, (s: NativeModelSpec) => {
        s.path = `${s.path}.does-not-exist`;
      }],
      ['unknown architecture', 'UNSUPPORTED', /gpt2/, (s: NativeModelSpec) => {
        (s as { arch: string }).arch = 'gpt2';
      }],
      ['nHead not a multiple of nHeadKV', 'INVALID_ARGUMENT', /nHeadKV/, (s: NativeModelSpec) => {
        s.hparams.nHeadKV = 3;
      }],
      ['odd rotaryDim', 'INVALID_ARGUMENT', /rotaryDim/, (s: NativeModelSpec) => {
        s.hparams.rotaryDim = 7;
      }],
      ['wrong RoPE pairing for llama', 'INVALID_ARGUMENT', /ropePairing/, (s: NativeModelSpec) => {
        s.hparams.ropePairing = 'neox';
      }],
      ['non-finite normEps', 'INVALID_ARGUMENT', /normEps/, (s: NativeModelSpec) => {
        s.hparams.normEps = NaN;
      }],
      ['tensors not an array', 'INVALID_ARGUMENT', /tensors/, (s: NativeModelSpec) => {
        (s as { tensors: unknown }).tensors = {};
      }],
      ['a tensor without dims', 'INVALID_ARGUMENT', /dims/, (s: NativeModelSpec) => {
        delete (tensor(s, 'output.weight') as { dims?: number[] }).dims;
      }],
    ] as const)('%s -> %s', async (_label, code, pattern, mutate) => {
      const s = clone(spec);
      mutate(s);
      const err = await rejects(() => addon.loadModel(s));
      expect(err.code).toBe(code);
      expect(err.message).toMatch(pattern);
    });

    test('not an object', async () => {
      expect((await rejects(() => addon.loadModel(42 as unknown as NativeModelSpec))).code).toBe('INVALID_ARGUMENT');
      expect((await rejects(() => (addon.loadModel as () => Promise<unknown>)())).code).toBe('INVALID_ARGUMENT');
    });

    test('the model still works after all that', async () => {
      const ctx = context();
      const out = await ctx.eval(new SlotTable(64, 0).batch([1, 403], vanillaMask(64), 'last'));
      expect(out.length).toBe(512);
    });
  });

  test('createContext rejects bad options (INVALID_ARGUMENT, thrown)', async () => {
    const bad: Partial<Parameters<NativeModel['createContext']>[0]>[] = [
      { nSlot: 0 },
      { nSlot: 1.5 },
      { kvType: 'q8' as 'f16' },
      { topKFromLayer: 6 },
      { nArchive: 4, topKFromLayer: 5 },
      { maxBatch: 0 },
      { threads: 0 },
    ];
    for (const o of bad) expect((await failure(() => context(o))).code).toBe('INVALID_ARGUMENT');
  });

  describe('eval rejects bad batches (INVALID_ARGUMENT) and the context stays usable', () => {
    let ctx: NativeContext;
    let good: () => NativeEvalBatch;
    beforeAll(() => {
      ctx = context();
      good = () => new SlotTable(64, 0).batch([1, 403, 407], vanillaMask(64), 'all');
    });

    test.each([
      ['batch larger than maxBatch', /maxBatch/, (b: NativeEvalBatch) => new SlotTable(64, 0).batch(Array(9).fill(5), b.mask, 'all')],
      ['empty batch', /maxBatch/, (b: NativeEvalBatch) => ({ ...b, tokens: new Int32Array(0), positions: new BigInt64Array(0), slots: new Int32Array(0) })],
      ['slot out of range', /slots\[1\]/, (b: NativeEvalBatch) => ({ ...b, slots: Int32Array.from([0, 64, 2]) })],
      ['negative slot', /slots\[0\]/, (b: NativeEvalBatch) => ({ ...b, slots: Int32Array.from([-1, 1, 2]) })],
      ['duplicate slot', /twice/, (b: NativeEvalBatch) => ({ ...b, slots: Int32Array.from([0, 0, 2]) })],
      ['positions not increasing', /positions\[2\].*increase/, (b: NativeEvalBatch) => ({ ...b, positions: BigInt64Array.from([0n, 2n, 1n]) })],
      ['token out of range', /tokens\[2\]/, (b: NativeEvalBatch) => ({ ...b, tokens: Int32Array.from([1, 2, 512]) })],
      ['negative token', /tokens\[0\]/, (b: NativeEvalBatch) => ({ ...b, tokens: Int32Array.from([-1, 2, 3]) })],
      ['negative position', /positions\[0\]/, (b: NativeEvalBatch) => ({ ...b, positions: BigInt64Array.from([-5n, 1n, 2n]) })],
      ['lengths differ', /same length/, (b: NativeEvalBatch) => ({ ...b, slots: Int32Array.from([0, 1]) })],
      ['slotPositions of the wrong length', /slotPositions/, (b: NativeEvalBatch) => ({ ...b, slotPositions: new BigInt64Array(10) })],
      ['a slot newer than the batch', /slotPositions\[1\].*older/, (b: NativeEvalBatch) => {
        const sp = b.slotPositions.slice();
        sp[1] = 7n;
        return { ...b, slotPositions: sp };
      }],
      ['archive copies without an archive', /archive/, (b: NativeEvalBatch) => ({ ...b, archiveCopies: Int32Array.from([0, 1]) })],
      ['odd archiveCopies', /pairs/, (b: NativeEvalBatch) => ({ ...b, archiveCopies: Int32Array.from([0]) })],
      ['tokens as a plain array', /tokens/, (b: NativeEvalBatch) => ({ ...b, tokens: [1, 2, 3] as unknown as Int32Array })],
      ['positions as Int32Array', /positions/, (b: NativeEvalBatch) => ({ ...b, positions: Int32Array.from([0, 1, 2]) as unknown as BigInt64Array })],
      ['nLocal 0', /nLocal/, (b: NativeEvalBatch) => ({ ...b, mask: { ...b.mask, nLocal: 0 } })],
      ['unknown logits mode', /logits/, (b: NativeEvalBatch) => ({ ...b, logits: 'some' as 'all' })],
      ['out of the wrong length', /'out' has 512 elements.*1536/, (b: NativeEvalBatch) => ({ ...b, out: new Float32Array(512) })],
      ['out of the wrong type', /'out' must be a Float32Array/, (b: NativeEvalBatch) => ({ ...b, out: new Float64Array(1536) as unknown as Float32Array })],
    ] as const)('%s', async (_label, pattern, make) => {
      const err = await rejects(() => ctx.eval(make(good())));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toMatch(pattern);
    });

    test('a batch with out writes the logits into it and resolves with that very array', async () => {
      const fresh = await ctx.eval(good());
      const out = new Float32Array(3 * 512).fill(Number.NaN);
      const got = await ctx.eval({ ...good(), out });
      expect(got).toBe(out);
      expect(Array.from(out)).toEqual(Array.from(fresh));
    });

    test('a good batch still runs', async () => {
      expect((await ctx.eval(good())).length).toBe(3 * 512);
      expect((await rejects(() => ctx.eval(undefined as unknown as NativeEvalBatch))).code).toBe('INVALID_ARGUMENT');
    });
  });

  describe('decode runs: bad requests are rejected (INVALID_ARGUMENT), rollback takes back only what the last run did', () => {
    const greedy: NativeSamplingParams = {
      temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, penaltyLastN: 64,
      biasIds: new Int32Array(0), biasValues: new Float64Array(0),
    };
    /** A run of `steps` greedy steps after the prompt [1, 403, 407] (positions 0-2 written by an eval). */
    const request = (steps = 4): NativeDecodeRequest => {
      const table = new BigInt64Array(64).fill(-1n);
      table.set([0n, 1n, 2n]);
      return {
        token: 261,
        positions: BigInt64Array.from({ length: steps }, (_, i) => BigInt(3 + i)),
        slots: Int32Array.from({ length: steps }, (_, i) => 3 + i),
        slotPositions: table,
        mask: vanillaMask(64),
        recent: Int32Array.of(1, 403, 407, 261),
        endAfter: new Uint8Array(512),
        budgetMs: 0,
        sampling: greedy,
        rngState: Uint32Array.of(1, 2, 3, 4),
        out: new Float32Array(512),
        sampledOut: new Int32Array(steps),
      };
    };

    test.each([
      ['no steps', /1 to min/, (r: NativeDecodeRequest) => ({ ...r, positions: new BigInt64Array(0), slots: new Int32Array(0) })],
      ['positions not increasing', /positions\[1\]/, (r: NativeDecodeRequest) => ({ ...r, positions: BigInt64Array.from([3n, 3n, 4n, 5n]) })],
      ['slot twice', /twice/, (r: NativeDecodeRequest) => ({ ...r, slots: Int32Array.from([3, 4, 3, 5]) })],
      ['slot out of range', /slots\[3\]/, (r: NativeDecodeRequest) => ({ ...r, slots: Int32Array.from([3, 4, 5, 64]) })],
      ['a table entry newer than the run', /slotPositions\[2\].*older/, (r: NativeDecodeRequest) => {
        const t = r.slotPositions.slice();
        t[2] = 3n;
        return { ...r, slotPositions: t };
      }],
      ['table of the wrong length', /slotPositions/, (r: NativeDecodeRequest) => ({ ...r, slotPositions: new BigInt64Array(10).fill(-1n) })],
      ['token out of range', /token/, (r: NativeDecodeRequest) => ({ ...r, token: 512 })],
      ['endAfter of the wrong length', /endAfter/, (r: NativeDecodeRequest) => ({ ...r, endAfter: new Uint8Array(10) })],
      ['rngState of the wrong length', /rngState/, (r: NativeDecodeRequest) => ({ ...r, rngState: new Uint32Array(2) })],
      ['a bias id outside the vocabulary', /biasIds\[0\]/, (r: NativeDecodeRequest) => ({ ...r, sampling: { ...greedy, biasIds: Int32Array.of(600), biasValues: Float64Array.of(1) } })],
      ['topP 0', /topP/, (r: NativeDecodeRequest) => ({ ...r, sampling: { ...greedy, topP: 0 } })],
      ['out of the wrong length', /'out'/, (r: NativeDecodeRequest) => ({ ...r, out: new Float32Array(3) })],
      ['sampledOut too short', /sampledOut/, (r: NativeDecodeRequest) => ({ ...r, sampledOut: new Int32Array(2) })],
    ] as const)('%s', async (_label, pattern, make) => {
      const ctx = context();
      await ctx.eval(new SlotTable(64, 0).batch([1, 403, 407], vanillaMask(64), 'last'));
      const err = await rejects(() => ctx.decode!(make(request())));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toMatch(pattern);
      ctx.dispose();
    });

    test('a run equals evals one by one with argmax between them; rollback restores the rows it overwrote', async () => {
      const table = new SlotTable(64, 0);
      const ref = context();
      let logits = await ref.eval(table.batch([1, 403, 407], vanillaMask(64), 'last'));
      const ids: number[] = [];
      let token = 261;
      for (let k = 0; k < 4; k++) {
        logits = await ref.eval(table.batch([token], vanillaMask(64), 'last'));
        token = argmaxRow(logits, 0, 512);
        ids.push(token);
      }

      const ctx = context();
      await ctx.eval(new SlotTable(64, 0).batch([1, 403, 407], vanillaMask(64), 'last'));
      const r = request();
      const result = await ctx.decode!(r);
      expect(result).toMatchObject({ steps: 4, sampled: 4 });
      expect(Array.from(r.sampledOut)).toEqual(ids);
      expect(Array.from(r.out)).toEqual(Array.from(logits));
      expect(ctx.stats()).toMatchObject({ evals: 5, calls: 2 });

      // Take back the last 3 steps and evaluate the first sampled id again: same logits as the reference's.
      ctx.rollback!(3);
      expect((await failure(() => ctx.rollback!(2))).message).toMatch(/can take back 1/);
      const again = new SlotTable(64, 0);
      again.batch([1, 403, 407, 261], vanillaMask(64), 'last');
      const redo = await ctx.eval(again.batch([ids[0]], vanillaMask(64), 'last'));
      // The same evaluations as ctx's (a batch of three, then 261 alone): ggml's matmul need not
      // round a row of a batch of four as it rounds a row alone (it does not on some CPUs).
      const check = context();
      const t2 = new SlotTable(64, 0);
      await check.eval(t2.batch([1, 403, 407], vanillaMask(64), 'last'));
      await check.eval(t2.batch([261], vanillaMask(64), 'last'));
      expect(Array.from(redo)).toEqual(Array.from(await check.eval(t2.batch([ids[0]], vanillaMask(64), 'last'))));
      // An eval ends what the last run can take back.
      expect((await failure(() => ctx.rollback!(1))).code).toBe('INVALID_ARGUMENT');
      for (const c of [ref, ctx, check]) c.dispose();
      expect((await failure(() => ctx.rollback!(0))).code).toBe('DISPOSED');
      expect((await rejects(() => ctx.decode!(request()))).code).toBe('DISPOSED');
    });

    test('a segmented context (the GPU path, on the CPU) runs the same steps and takes them back the same way', async () => {
      const results: { ids: number[]; logits: number[]; after: number[] }[] = [];
      for (const segmented of [false, true]) {
        const ctx = context({ segmented });
        await ctx.eval(new SlotTable(64, 0).batch([1, 403, 407], vanillaMask(64), 'last'));
        const r = request(6);
        await ctx.decode!(r);
        ctx.rollback!(4);
        const t = new SlotTable(64, 0);
        t.batch([1, 403, 407, 261, r.sampledOut[0]], vanillaMask(64), 'last');
        const after = await ctx.eval(t.batch([r.sampledOut[1]], vanillaMask(64), 'last'));
        results.push({ ids: Array.from(r.sampledOut), logits: Array.from(r.out), after: Array.from(after) });
        ctx.dispose();
      }
      expect(results[1].ids).toEqual(results[0].ids);
      for (const key of ['logits', 'after'] as const)
        for (let i = 0; i < 512; i++) expect(Math.abs(results[1][key][i] - results[0][key][i])).toBeLessThanOrEqual(1e-5); // as test/engine/segmented.test.ts
    });

    test('a context with a top-k archive takes no runs', async () => {
      const ctx = context({ nSlot: 60, nArchive: 4, topKFromLayer: 2 });
      const err = await rejects(() => ctx.decode!({ ...request(), slotPositions: new BigInt64Array(64).fill(-1n) }));
      expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/top-k archive/) });
      ctx.dispose();
    });
  });

  test('one eval at a time per context: a second concurrent eval is rejected, the first completes', async () => {
    const ctx = context();
    const table = new SlotTable(64, 0);
    const first = ctx.eval(table.batch([1, 403, 407, 261], vanillaMask(64), 'last'));
    const second = await rejects(() => ctx.eval(new SlotTable(64, 0).batch([1], vanillaMask(64), 'last')));
    expect(second.code).toBe('INVALID_ARGUMENT');
    expect(second.message).toMatch(/one eval at a time/);
    expect((await first).length).toBe(512);
    expect((await ctx.eval(table.batch([378], vanillaMask(64), 'last'))).length).toBe(512);
    ctx.dispose();
  });

  test('dispose during an eval: the eval completes, later calls fail with DISPOSED', async () => {
    const ctx = context({ nSlot: 512, maxBatch: 512 });
    const pending = ctx.eval(new SlotTable(512, 0).batch(Array(300).fill(300), vanillaMask(512), 'all'));
    ctx.dispose();
    ctx.dispose(); // twice is fine
    const logits = await pending;
    expect(logits.length).toBe(300 * 512);
    expect((await rejects(() => ctx.eval(new SlotTable(512, 0).batch([1], vanillaMask(512), 'last')))).code).toBe('DISPOSED');
    expect((await failure(() => ctx.kvBytes())).code).toBe('DISPOSED');
  });

  test('contexts outlive their disposed model; the disposed model throws DISPOSED', async () => {
    const m = await addon.loadModel(spec);
    const ctx = m.createContext({ nSlot: 16, nArchive: 0, topKFromLayer: 0, kvType: 'f32', maxBatch: 4, threads: 1 });
    m.dispose();
    expect((await failure(() => m.createContext({ nSlot: 16, nArchive: 0, topKFromLayer: 0, kvType: 'f32', maxBatch: 4, threads: 1 }))).code).toBe('DISPOSED');
    expect((await failure(() => m.weightBytes())).code).toBe('DISPOSED');
    const out = await ctx.eval(new SlotTable(16, 0).batch([1, 403], vanillaMask(16), 'all'));
    expect(out.every(Number.isFinite)).toBe(true);
    ctx.dispose();
  });

  test('contexts of one model evaluate concurrently and agree', async () => {
    const tokens = [1, 403, 407, 261, 378, 432, 383, 286];
    const contexts = [0, 1, 2].map(() => context({ threads: 1 }));
    const results = await Promise.all(contexts.map((c) => c.eval(new SlotTable(64, 0).batch(tokens, vanillaMask(64), 'all'))));
    for (const r of results.slice(1)) expect(Array.from(r)).toEqual(Array.from(results[0]));
    contexts.forEach((c) => c.dispose());
  });

  test('objects cannot be constructed from JS', async () => {
    const ctx = context();
    const Ctor = (ctx as unknown as { constructor: new (...a: unknown[]) => unknown }).constructor;
    expect((await failure(() => new Ctor())).code).toBe('INVALID_ARGUMENT');
    const MCtor = (model as unknown as { constructor: new (...a: unknown[]) => unknown }).constructor;
    expect((await failure(() => new MCtor({}, {}))).code).toBe('INVALID_ARGUMENT');
    // methods called on the wrong receiver throw instead of crashing
    await failure(() => (ctx.kvBytes as () => number).call({}));
    ctx.dispose();
  });
});

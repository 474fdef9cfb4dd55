/**
 * The N-API attention function against the separately written TypeScript reference, the DESIGN.md §1
 * properties, and bad input. Builds/loads the real addon.
 */
import { attention, type AttentionInput } from '../../lib/attention/attention';
import { InvalidArgumentError, LmiError } from '../../lib/errors';
import { loadAddon } from '../../lib/native/addon';
import { fromHalfArray, toHalfArray } from '../../lib/util/half';
import { referenceAttention, type ReferenceProblem } from '../reference/attention-reference';
import { Rng } from '../helpers/random';

interface Case {
  nHead: number;
  nHeadKV: number;
  headDim: number;
  nQ: number;
  history: number; // tokens in the stream before the queries
  nLocal: number;
  nGlobal: number;
  limitDistance: number;
  encoding: ReferenceProblem['encoding'];
  topK: { k: number; insertAt: number };
  f16: boolean;
  vanilla: boolean;
  shuffleSlots: boolean;
  emptySlots: number;
}

/** Builds a stream of `history + nQ` tokens in shuffled slots; the queries are the last nQ positions. */
function build(rng: Rng, c: Case, offset = 0) {
  const nTok = c.history + c.nQ;
  const nSlot = nTok + c.emptySlots;
  const kF = rng.floats(nSlot * c.nHeadKV * c.headDim);
  const vF = rng.floats(nSlot * c.nHeadKV * c.headDim);
  const q = rng.floats(c.nQ * c.nHead * c.headDim);
  const order = Array.from({ length: nSlot }, (_, s) => s);
  if (c.shuffleSlots) rng.shuffle(order);
  const slotPos = order.map((t) => (t < nTok ? t : -1));
  const qPos = Array.from({ length: c.nQ }, (_, n) => c.history + n);
  const k = c.f16 ? toHalfArray(kF) : kF;
  const v = c.f16 ? toHalfArray(vF) : vF;
  const kRef = c.f16 ? fromHalfArray(k as Uint16Array) : kF;
  const vRef = c.f16 ? fromHalfArray(v as Uint16Array) : vF;
  const scale = 1 / Math.sqrt(c.headDim);
  const mask = { lambda: !c.vanilla, origin: 0, nGlobal: c.nGlobal, nLocal: c.nLocal, limitDistance: c.limitDistance };
  const ref: ReferenceProblem = {
    nHead: c.nHead, nHeadKV: c.nHeadKV, headDim: c.headDim, q, k: kRef, v: vRef,
    slotPos, qPos, scale, encoding: c.encoding, mask, topK: c.topK,
  };
  const input: AttentionInput = {
    q, k, v, nHead: c.nHead, nHeadKV: c.nHeadKV, headDim: c.headDim,
    slotPositions: BigInt64Array.from(slotPos.map((p) => (p < 0 ? -1n : BigInt(p) + BigInt(offset)))),
    queryPositions: BigInt64Array.from(qPos.map((p) => BigInt(p) + BigInt(offset))),
    encoding: c.encoding.kind === 'alibi' ? { kind: 'alibi', slopes: Float32Array.from(c.encoding.slopes) } : c.encoding,
    attention: c.vanilla ? 'vanilla' : { nLocal: c.nLocal, nGlobal: c.nGlobal, limitDistance: c.limitDistance, origin: offset, topK: c.topK },
    scale,
  };
  return { input, ref };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function randomCase(rng: Rng): Case {
  const headDim = rng.pick([64, 80, 128]);
  const nHeadKV = rng.pick([1, 2]);
  const nHead = nHeadKV * rng.pick([1, 2, 4, 8]);
  const nQ = rng.pick([1, 1, 5, 33]);
  const history = rng.int(0, 150);
  const nLocal = rng.pick([1, 8, 40, 64, 500]);
  const rotaryDim = rng.pick([headDim, headDim / 2, 16]);
  const encKind = rng.pick(['rope', 'rope', 'rope', 'alibi', 'none'] as const);
  const encoding: ReferenceProblem['encoding'] =
    encKind === 'rope'
      ? { kind: 'rope', thetaBase: rng.pick([10000, 500000]), freqScale: rng.pick([1, 0.25]), rotaryDim, pairing: rng.pick(['normal', 'neox'] as const) }
      : encKind === 'alibi'
        ? { kind: 'alibi', slopes: Array.from({ length: nHead }, (_, h) => 2 ** (-(8 * (h + 1)) / nHead)) }
        : { kind: 'none' };
  return {
    nHead, nHeadKV, headDim, nQ, history, nLocal,
    nGlobal: rng.pick([0, 1, 4, 10, 100]),
    limitDistance: rng.pick([nLocal, Math.max(0, nLocal - 3)]),
    encoding,
    topK: rng.next() < 0.3 ? { k: rng.pick([1, 3, 5]), insertAt: rng.int(0, nLocal) } : { k: 0, insertAt: 0 },
    f16: rng.next() < 0.5,
    vanilla: rng.next() < 0.15,
    shuffleSlots: rng.next() < 0.7,
    emptySlots: rng.pick([0, 0, 3]),
  };
}

describe('native attention against the TypeScript reference', () => {
  const rng = new Rng(20240917);
  const cases = Array.from({ length: 40 }, () => randomCase(rng));
  test.each(cases.map((c, n) => [n, c] as const))('random case %i', async (_n, c) => {
    const { input, ref } = build(new Rng(1000 + _n), c);
    const expected = referenceAttention(ref);
    // Every kernel path: AVX-512 decode tiles where the CPU has them, AVX2, portable.
    for (const path of [{}, { noAvx512: true }, { forcePortable: true }]) {
      const got = await attention({ ...input, ...path, threads: 2 });
      expect(got.length).toBe(expected.length);
      expect(maxAbsDiff(got, expected)).toBeLessThan(2e-4);
    }
  });
});

describe('properties of DESIGN.md §1', () => {
  const base: Case = {
    nHead: 8, nHeadKV: 2, headDim: 64, nQ: 16, history: 100, nLocal: 200, nGlobal: 10, limitDistance: 200,
    encoding: { kind: 'rope', thetaBase: 10000, freqScale: 1, rotaryDim: 64, pairing: 'neox' },
    topK: { k: 0, insertAt: 0 }, f16: false, vanilla: false, shuffleSlots: true, emptySlots: 2,
  };

  test('equals vanilla causal attention while every key is within nLocal', async () => {
    const lambda = build(new Rng(7), base);
    const vanilla = build(new Rng(7), { ...base, vanilla: true });
    const a = await attention(lambda.input);
    const b = await attention(vanilla.input);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-6);
  });

  test('differs from vanilla once keys fall outside nLocal (the mask is real)', async () => {
    const c = { ...base, nLocal: 20, limitDistance: 20 };
    const a = await attention(build(new Rng(7), c).input);
    const b = await attention(build(new Rng(7), { ...c, vanilla: true }).input);
    expect(maxAbsDiff(a, b)).toBeGreaterThan(1e-2);
  });

  test.each([
    ['rope normal', { kind: 'rope', thetaBase: 10000, freqScale: 1, rotaryDim: 64, pairing: 'normal' }],
    ['rope neox partial', { kind: 'rope', thetaBase: 1e6, freqScale: 1, rotaryDim: 32, pairing: 'neox' }],
    ['alibi', { kind: 'alibi', slopes: Array.from({ length: 8 }, (_, h) => 2 ** -(h + 1)) }],
  ] as const)('shift invariance with Δ = 2^40 (%s)', async (_name, encoding) => {
    const c: Case = { ...base, nLocal: 40, limitDistance: 40, encoding, topK: { k: 3, insertAt: 20 } };
    const unshifted = await attention(build(new Rng(9), c).input);
    const shifted = await attention(build(new Rng(9), c, 2 ** 40).input);
    expect(maxAbsDiff(unshifted, shifted)).toBeLessThan(1e-5);
    // And the unshifted result is the reference's.
    expect(maxAbsDiff(unshifted, referenceAttention(build(new Rng(9), c).ref))).toBeLessThan(2e-4);
  });

  test('a single visible key returns its value exactly', async () => {
    const v = Float32Array.from({ length: 64 }, (_, d) => d / 7);
    const out = await attention({
      q: new Float32Array(64).fill(0.3), k: new Float32Array(64).fill(1), v,
      nHead: 1, nHeadKV: 1, headDim: 64, slotPositions: [5], queryPositions: [9],
      encoding: { kind: 'rope' }, attention: { nLocal: 512 },
    });
    expect(maxAbsDiff(out, v)).toBeLessThan(1e-6);
  });

  test('a query with no visible key gets zeros', async () => {
    const out = await attention({
      q: new Float32Array(8).fill(1), k: new Float32Array(8).fill(1), v: new Float32Array(8).fill(3),
      nHead: 1, nHeadKV: 1, headDim: 8, slotPositions: [50], queryPositions: [10],
      encoding: { kind: 'none' }, attention: 'vanilla',
    });
    expect(Array.from(out)).toEqual(new Array(8).fill(0));
  });
});

describe('runs off the event loop', () => {
  test('timers keep firing while a large prefill computes', async () => {
    const rng = new Rng(3);
    const n = 4096;
    const nHead = 8, headDim = 64;
    const q = rng.floats(n * nHead * headDim);
    const k = rng.floats(n * nHead * headDim);
    const positions = BigInt64Array.from({ length: n }, (_, i) => BigInt(i));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = Date.now();
    await attention({ q, k, v: k, nHead, nHeadKV: nHead, headDim, slotPositions: positions, queryPositions: positions, encoding: { kind: 'rope' }, attention: 'vanilla' });
    const elapsed = Date.now() - started;
    clearInterval(timer);
    // If the computation blocked the loop, no tick could fire before it finished.
    if (elapsed > 100) expect(ticks).toBeGreaterThan(2);
  });
});

describe('bad input raises a typed error and never crashes', () => {
  const ok = (): AttentionInput => ({
    q: new Float32Array(2 * 4 * 8), k: new Float32Array(3 * 2 * 8), v: new Float32Array(3 * 2 * 8),
    nHead: 4, nHeadKV: 2, headDim: 8, slotPositions: [0, 1, 2], queryPositions: [1, 2],
    encoding: { kind: 'rope' }, attention: { nLocal: 4 },
  });

  test('the valid baseline works', async () => {
    const out = await attention(ok());
    // The addon's Float32Array belongs to Node's realm, not jest's sandbox: check the tag.
    expect(Object.prototype.toString.call(out)).toBe('[object Float32Array]');
    expect(out.length).toBe(2 * 4 * 8);
  });

  const bad: [string, (i: AttentionInput) => unknown][] = [
    ['mismatched q length', (i) => ({ ...i, q: new Float32Array(7) })],
    ['mismatched v length', (i) => ({ ...i, v: new Float32Array(8) })],
    ['slot positions length', (i) => ({ ...i, slotPositions: [0, 1] })],
    ['query positions length', (i) => ({ ...i, queryPositions: [0] })],
    ['nLocal = 0', (i) => ({ ...i, attention: { nLocal: 0 } })],
    ['negative query position', (i) => ({ ...i, queryPositions: [-3, 2] })],
    ['slot position below -1', (i) => ({ ...i, slotPositions: [0, -2, 2] })],
    ['fractional position', (i) => ({ ...i, queryPositions: [0.5, 2] })],
    ['q as Float64Array', (i) => ({ ...i, q: new Float64Array(64) })],
    ['k as plain array', (i) => ({ ...i, k: Array.from({ length: 48 }, () => 0) })],
    ['v type differs from k', (i) => ({ ...i, v: new Uint16Array(48) })],
    ['NaN scale', (i) => ({ ...i, scale: NaN })],
    ['NaN nGlobal', (i) => ({ ...i, attention: { nLocal: 4, nGlobal: NaN } })],
    ['NaN theta', (i) => ({ ...i, encoding: { kind: 'rope', thetaBase: NaN } })],
    ['odd rotaryDim', (i) => ({ ...i, encoding: { kind: 'rope', rotaryDim: 3 } })],
    ['rotaryDim > headDim', (i) => ({ ...i, encoding: { kind: 'rope', rotaryDim: 16 } })],
    ['nHead not a multiple of nHeadKV', (i) => ({ ...i, nHeadKV: 3 })],
    ['alibi slopes count', (i) => ({ ...i, encoding: { kind: 'alibi', slopes: [1] } })],
    ['unknown encoding', (i) => ({ ...i, encoding: { kind: 'xpos' } })],
    ['negative top-k', (i) => ({ ...i, attention: { nLocal: 4, topK: { k: -1, insertAt: 2 } } })],
    ['zero threads', (i) => ({ ...i, threads: 0 })],
    ['not an object', () => 42],
  ];
  test.each(bad)('%s', async (_name, mutate) => {
    const err = await attention(mutate(ok()) as AttentionInput).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as LmiError).code).toBe('INVALID_ARGUMENT');
  });

  // The native side must hold its own line too: the addon called directly, past the TS checks.
  const nativeOk = () => ({
    nQ: 1, nHead: 1, nHeadKV: 1, headDim: 4, nSlot: 1, kvType: 'f32',
    q: new Float32Array(4), k: new Float32Array(4), v: new Float32Array(4),
    slotPos: new BigInt64Array(1), qPos: new BigInt64Array(1), scale: 0.5,
    encoding: { kind: 'rope', thetaBase: 10000, freqScale: 1, rotaryDim: 4, pairing: 'normal' },
    mask: { lambda: true, origin: 0, nGlobal: 1, nLocal: 4, limitDistance: 4 },
    topK: { k: 0, insertAt: 0 }, threads: 1,
  });
  const nativeBad: [string, (a: Record<string, unknown>) => unknown][] = [
    ['no argument', () => undefined],
    ['q too short', (a) => ({ ...a, q: new Float32Array(3) })],
    ['q wrong type', (a) => ({ ...a, q: new Float64Array(4) })],
    ['positions as Float64Array', (a) => ({ ...a, qPos: new Float64Array(1) })],
    ['negative query position', (a) => ({ ...a, qPos: BigInt64Array.of(-5n) })],
    ['nLocal 0', (a) => ({ ...a, mask: { ...(a.mask as object), nLocal: 0 } })],
    ['NaN scale', (a) => ({ ...a, scale: NaN })],
    ['huge nSlot', (a) => ({ ...a, nSlot: 2 ** 40 })],
    ['missing mask', (a) => ({ ...a, mask: undefined })],
    ['bad kvType', (a) => ({ ...a, kvType: 'q8' })],
    ['infinite theta', (a) => ({ ...a, encoding: { ...(a.encoding as object), thetaBase: Infinity } })],
  ];
  test.each(nativeBad)('native: %s', async (_name, mutate) => {
    const addon = await loadAddon();
    let err: unknown;
    try {
      await (addon.attention as (a: unknown) => Promise<unknown>)(mutate(nativeOk()));
    } catch (e) {
      err = e;
    }
    // Errors made by native code belong to Node's realm, not jest's sandbox: check the shape.
    expect(typeof (err as { message?: unknown })?.message).toBe('string');
    expect((err as { code?: string }).code).toBe('INVALID_ARGUMENT');
  });
});

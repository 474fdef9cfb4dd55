/**
 * Properties of the reference forward pass that need no oracle: incremental = one-shot, Λ inside
 * the window = vanilla (DESIGN §1), Λ past the window differs, shift invariance, top-k plumbing,
 * ALiBi slopes as ggml derives them, and the generator's guards for what llama.cpp refuses.
 */
import { parseGguf } from '../../lib/gguf';
import { alibiSlopes, ReferenceModel } from '../reference/forward';
import { makeSyntheticModel, type SyntheticArch, type SyntheticModelOptions } from '../helpers/synthetic-models';
import { randomTokens } from './compare';

const BASE: SyntheticModelOptions = { seed: 3, nEmbd: 64, nLayer: 2, nHead: 4, nFF: 64, nCtx: 64, weightType: 'F32' };
const ARCH: Record<SyntheticArch, Partial<SyntheticModelOptions>> = {
  llama: { nHeadKV: 2 },
  qwen2: { nHeadKV: 2 },
  gptneox: { rotaryDim: 8 },
  mpt: {},
};

function model(arch: SyntheticArch, extra: Partial<SyntheticModelOptions> = {}): ReferenceModel {
  const bytes = makeSyntheticModel(arch, { ...BASE, ...ARCH[arch], ...extra });
  return new ReferenceModel(parseGguf(bytes), bytes);
}

function maxDiff(a: Float64Array[], b: Float64Array[]): number {
  let m = 0;
  a.forEach((row, p) => row.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[p][j])))));
  return m;
}

const ARCHES: SyntheticArch[] = ['llama', 'qwen2', 'gptneox', 'mpt'];
const TOKENS = randomTokens(40, 5);

describe.each(ARCHES)('%s reference', (arch) => {
  const m = model(arch);
  const vanilla = m.forward(TOKENS);

  test('feeding the sequence in pieces gives the one-shot logits', () => {
    const state = m.createState();
    const pieces = [TOKENS.slice(0, 17), TOKENS.slice(17, 18), TOKENS.slice(18)];
    const logits = pieces.flatMap((p) => m.eval(state, p));
    expect(maxDiff(logits, vanilla)).toBeLessThan(1e-12);
  });

  test('Λ with the whole sequence inside nLocal equals vanilla', () => {
    expect(maxDiff(m.forward(TOKENS, { attention: { nGlobal: 4, nLocal: TOKENS.length } }), vanilla)).toBe(0);
    expect(maxDiff(m.forward(TOKENS, { attention: 'lambda' }), vanilla)).toBe(0); // nLocal = context 64 > 40
  });

  test('Λ with a short window equals vanilla inside it and differs past it', () => {
    const lam = m.forward(TOKENS, { attention: { nGlobal: 2, nLocal: 8, limitDistance: 8 } });
    expect(maxDiff(lam.slice(0, 8), vanilla.slice(0, 8))).toBe(0);
    expect(maxDiff(lam.slice(20), vanilla.slice(20))).toBeGreaterThan(1e-3);
  });

  test('shifting every position leaves the logits unchanged', () => {
    for (const attention of ['vanilla', { nGlobal: 2, nLocal: 8, limitDistance: 8 }] as const) {
      const at0 = m.forward(TOKENS, { attention });
      expect(maxDiff(m.forward(TOKENS, { attention, startPosition: 1_000_003 }), at0)).toBeLessThan(1e-8);
      // At 2^40 the attention reference's double-precision angles (absolute position times frequency)
      // keep ~1e-4 rad: still well inside float tolerance of the logits.
      expect(maxDiff(m.forward(TOKENS, { attention, startPosition: 2 ** 40 }), at0)).toBeLessThan(1e-2);
    }
  });

  test('top-k reaches only the layers from fromLayer on, and only past the window', () => {
    const window = { nGlobal: 2, nLocal: 8, limitDistance: 8 };
    const plain = m.forward(TOKENS, { attention: window });
    expect(maxDiff(m.forward(TOKENS, { attention: { ...window, topK: { k: 3, fromLayer: BASE.nLayer } } }), plain)).toBe(0);
    const topK = m.forward(TOKENS, { attention: { ...window, topK: { k: 3, fromLayer: 1, insertAt: 4 } } });
    expect(maxDiff(topK.slice(0, 10), plain.slice(0, 10))).toBe(0); // no middle keys before position nLocal + nGlobal
    expect(maxDiff(topK.slice(20), plain.slice(20))).toBeGreaterThan(1e-4);
  });

  test('an f16 K/V cache moves the logits a little', () => {
    const d = maxDiff(m.forward(TOKENS, { kvType: 'f16' }), vanilla);
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(0.05);
  });
});

describe('reference details', () => {
  test('greedy decoding with the incremental state equals re-running the whole prefix', () => {
    const m = model('llama');
    const ids = m.greedy(TOKENS.slice(0, 6), 5);
    const seq = TOKENS.slice(0, 6);
    for (const want of ids) {
      const logits = m.forward(seq);
      const last = logits[logits.length - 1];
      const next = last.indexOf(Math.max(...last));
      expect(next).toBe(want);
      seq.push(next);
    }
  });

  test('ALiBi slopes follow ggml for power-of-two and other head counts', () => {
    const close = (got: Float64Array, want: number[]) => {
      expect(got).toHaveLength(want.length);
      want.forEach((w, h) => expect(got[h]).toBeCloseTo(w, 14));
    };
    close(alibiSlopes(8, 8), [1, 2, 3, 4, 5, 6, 7, 8].map((h) => 2 ** -h));
    // nHead 6: the nearest power of two below is 4 -> 2^-2, 2^-4, 2^-6, 2^-8, then 2^-1, 2^-3.
    close(alibiSlopes(6, 8), [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]);
    close(alibiSlopes(4, 6), [2 ** -1.5, 2 ** -3, 2 ** -4.5, 2 ** -6]);
  });

  test('one-layer mpt without max_alibi_bias has no positional signal: the order of the past does not matter', () => {
    const m = model('mpt', { alibiBiasMax: 0, nLayer: 1 });
    expect(m.hparams.positional).toBe('none');
    const a = m.forward([1, 10, 20, 30, 40]);
    const b = m.forward([1, 30, 10, 20, 40]);
    expect(maxDiff([a[4]], [b[4]])).toBeLessThan(1e-12);
  });

  test('the generator refuses what llama.cpp refuses', () => {
    // llama.cpp: "invalid n_rot: 8, expected 16" (llama); GGML_ASSERT(n_embd_head == n_rot) aborts (qwen2).
    expect(() => makeSyntheticModel('llama', { ...BASE, rotaryDim: 8 })).toThrow(/gptneox only/);
    // llama.cpp: "missing tensor 'output.weight'" (gptneox has no tied classifier).
    expect(() => makeSyntheticModel('gptneox', { ...BASE, tiedOutput: true })).toThrow(/output.weight/);
  });

  test('hyperparameters are read as llama.cpp reads them', () => {
    const g = model('gptneox', { parallelResidual: false, ropeTheta: 1234 }).hparams;
    expect(g).toMatchObject({ arch: 'gptneox', rotaryDim: 8, ropePairing: 'neox', parallelResidual: false, ropeTheta: 1234, positional: 'rope', headDim: 16, nVocab: 512 });
    expect(model('llama').hparams).toMatchObject({ ropePairing: 'normal', nHeadKV: 2, rotaryDim: 16, parallelResidual: false });
    expect(model('mpt', { clampKQV: 2 }).hparams).toMatchObject({ positional: 'alibi', alibiBiasMax: 8, clampKQV: 2 });
  });
});

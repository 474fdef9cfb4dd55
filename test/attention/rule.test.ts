/** The TypeScript mirror of the attention rule agrees with the C++ one (lambda_rule.h) and with DESIGN.md §1. */
import { classify, globalDistance, type Branch, type LambdaMask } from '../../lib/attention/rule';
import { loadAddon } from '../../lib/native/addon';
import { Rng } from '../helpers/random';

const NATIVE_BRANCH: Branch[] = ['masked', 'local', 'global', 'middle'];

describe('the Λ rule', () => {
  const m: LambdaMask = { lambda: true, origin: 0, nGlobal: 10, nLocal: 512, limitDistance: 512 };

  test('the DESIGN table, case by case', () => {
    expect(classify(100, 101, m)).toBe('masked'); // future key
    expect(classify(100, 100, m)).toBe('local'); // d = 0
    expect(classify(600, 89, m)).toBe('local'); // d = 511 < nLocal
    expect(classify(600, 88, m)).toBe('middle'); // d = 512, j >= nGlobal
    expect(classify(600, 9, m)).toBe('global'); // d >= nLocal, j < nGlobal
    expect(classify(600, 10, m)).toBe('middle');
    expect(classify(5000, 3, { ...m, lambda: false })).toBe('local'); // vanilla: everything causal is local
    expect(globalDistance(600, m)).toBe(512);
    expect(globalDistance(300, { ...m, limitDistance: 1000 })).toBe(300); // L = min(limitDistance, i)
  });

  test('origin shifts the global tokens with the stream', () => {
    const shifted = { ...m, origin: 2 ** 40 };
    expect(classify(2 ** 40 + 600, 2 ** 40 + 9, shifted)).toBe('global');
    expect(classify(2 ** 40 + 600, 2 ** 40 + 10, shifted)).toBe('middle');
  });

  test('TypeScript and C++ agree on random and edge pairs', async () => {
    const addon = await loadAddon();
    const rng = new Rng(42);
    for (let trial = 0; trial < 50; trial++) {
      const mask: LambdaMask = {
        lambda: rng.next() < 0.85,
        origin: rng.pick([0, 0, 7, 2 ** 40]),
        nGlobal: rng.pick([0, 1, 10, 100]),
        nLocal: rng.pick([1, 2, 64, 512, 4096]),
        limitDistance: rng.pick([0, 64, 512]),
      };
      const n = 2000;
      const i = new BigInt64Array(n);
      const j = new BigInt64Array(n);
      for (let t = 0; t < n; t++) {
        const qi = mask.origin + rng.int(0, 10000);
        const d = rng.pick([rng.int(-5, 5), rng.int(-2, 2) + mask.nLocal, rng.int(0, 10000)]);
        const kj = Math.max(mask.origin, qi - d);
        i[t] = BigInt(qi);
        j[t] = BigInt(rng.next() < 0.2 ? mask.origin + rng.int(0, mask.nGlobal + 2) : kj);
      }
      const native = addon.classify(i, j, mask);
      const disagreements: string[] = [];
      for (let t = 0; t < n; t++) {
        const ts = classify(Number(i[t]), Number(j[t]), mask);
        if (NATIVE_BRANCH[native[t]] !== ts) disagreements.push(`i=${i[t]} j=${j[t]}: C++ ${NATIVE_BRANCH[native[t]]}, TS ${ts}`);
      }
      expect(disagreements).toEqual([]);
    }
  });
});

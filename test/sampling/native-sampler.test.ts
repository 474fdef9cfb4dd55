/**
 * The native sampler (native/engine/src/sampling.cpp, what decode runs sample with) against
 * lib/sampling's Sampler, the reference: on random and adversarial rows, every option, the same id
 * and the same PRNG state after each draw; and -1 with the state untouched exactly where the
 * TypeScript sampler does something other than return an id from a clean row.
 */
import { loadAddon } from '../../lib/native/addon';
import type { NativeAddon } from '../../lib/native/types';
import { Sampler, type SamplingOptions } from '../../lib/sampling';
import { Rng } from '../helpers/random';

let addon: NativeAddon;

beforeAll(async () => {
  addon = await loadAddon();
});

/** Draws with both samplers, chaining the TS sampler's PRNG state into the native one. */
function compare(options: SamplingOptions, rows: Float32Array[], recent: Int32Array): { same: number; declined: number } {
  const sampler = new Sampler(options, rows[0].length);
  let same = 0;
  let declined = 0;
  for (const row of rows) {
    const before = sampler.rngState;
    const native = addon.sampleToken({ logits: row, sampling: sampler.nativeParams(), rngState: before, recent });
    let expected: number | Error;
    try {
      expected = sampler.sample(row, recent);
    } catch (err) {
      expected = err as Error;
    }
    if (native.token < 0) {
      // Left to TypeScript: allowed only where the row is not clean, and nothing was drawn.
      expect(Array.from(native.rngState)).toEqual(Array.from(before));
      const clean = row.every((v) => !Number.isNaN(v) && v !== Infinity) && !(expected instanceof Error);
      expect({ clean, options }).toEqual({ clean: false, options });
      sampler.rngState = before;
      declined++;
      continue;
    }
    expect({ token: native.token, options }).toEqual({ token: expected, options });
    expect(Array.from(native.rngState)).toEqual(Array.from(sampler.rngState));
    same++;
  }
  return { same, declined };
}

const OPTIONS: SamplingOptions[] = [
  { temperature: 0 },
  { temperature: 0.8 },
  { temperature: 1, topK: 0, topP: 1, minP: 0 },
  { temperature: 1.5, topK: 0, topP: 0.9, minP: 0 },
  { temperature: 0.3, topK: 1 },
  { temperature: 1, topK: 5, topP: 0.5, minP: 0.2 },
  { temperature: 1, topK: 0, topP: 1e-9, minP: 0 },
  { temperature: 1, topK: 0, topP: 1, minP: 1 },
  { temperature: 1e-3, topK: 0, topP: 0.99, minP: 0 },
  { temperature: 100, topK: 64, topP: 0.95, minP: 0.01 },
  { temperature: 0.9, repeatPenalty: 1.5, presencePenalty: 0.5, frequencyPenalty: 0.25, penaltyLastN: 16 },
  { temperature: 0, repeatPenalty: 2, penaltyLastN: 64 },
  { temperature: 1, topK: 0, topP: 1, minP: 0, logitBias: { 0: -Infinity, 3: 5, 7: -2.5, 100: 1e-3 } },
  { temperature: 0, logitBias: { 1: -Infinity, 2: 40 } },
  // The far ends of what resolveSamplingOptions accepts.
  { temperature: 1e308, topK: Number.MAX_SAFE_INTEGER, topP: 1, minP: 0 },
  { temperature: 1e-30, topK: 0, topP: 1, minP: 0 },
];

describe('native sampler = lib/sampling', () => {
  test.each(OPTIONS)('random rows: %j', (options) => {
    const rng = new Rng(17);
    const rows = Array.from({ length: 40 }, (_, k) => rng.floats(512, k % 3 === 0 ? 8 : 2));
    const recent = Int32Array.from({ length: 80 }, () => rng.int(0, 511));
    expect(compare({ ...options, seed: 5 }, rows, recent)).toEqual({ same: 40, declined: 0 });
  });

  test.each(OPTIONS)('ties, -Infinity, underflow and a lone finite logit: %j', (options) => {
    const n = 300;
    const ties = new Float32Array(n).fill(1.25);
    const steps = Float32Array.from({ length: n }, (_, i) => Math.floor(i / 50)); // runs of equal values
    const banned = Float32Array.from({ length: n }, (_, i) => (i % 7 === 0 ? 2 : -Infinity));
    const lone = new Float32Array(n).fill(-Infinity);
    lone[123] = -5;
    const spread = Float32Array.from({ length: n }, (_, i) => (i === 9 ? 3.0e38 : i === 10 ? -3.0e38 : -800 + i)); // exp underflows
    const tiny = Float32Array.from({ length: n }, (_, i) => i * 1e-40); // subnormal differences
    // Two equal logits: probabilities of exactly 0.5, where top-p 0.5 must stop after the first.
    const pair = new Float32Array(n).fill(-Infinity);
    pair[40] = pair[41] = 0.75;
    const recent = Int32Array.of(9, 9, 123, 5, 0, 2, 2, 2);
    const rows = [ties, steps, banned, lone, spread, tiny, ...Array<Float32Array>(8).fill(pair)];
    const result = compare({ ...options, seed: 11 }, rows, recent);
    expect(result.same + result.declined).toBe(rows.length);
  });

  test('NaN or +Infinity in a row, or nothing left to sample: -1, PRNG untouched, and the TS sampler decides', () => {
    const n = 64;
    const nan = new Float32Array(n).fill(0.5);
    nan[3] = NaN;
    const inf = new Float32Array(n).fill(0.5);
    inf[8] = Infinity;
    const none = new Float32Array(n).fill(-Infinity);
    for (const options of [{ temperature: 0 }, { temperature: 0.7 }, { temperature: 1, topK: 3 }]) {
      const result = compare({ ...options, seed: 2 }, [nan, inf, none], new Int32Array(0));
      expect(result).toEqual({ same: 0, declined: 3 });
    }
    // A repetition penalty that sends a logit to +Infinity is declined the same way.
    const row = new Float32Array(n).fill(1);
    expect(compare({ temperature: 0.5, repeatPenalty: 1e-300, seed: 1 }, [row], Int32Array.of(4))).toEqual({ same: 0, declined: 1 });
  });

  test('a Sampler given the native sampler (as sessions are) draws what one without it draws', () => {
    const rng = new Rng(3);
    for (const options of OPTIONS) {
      const plain = new Sampler({ ...options, seed: 9 }, 256);
      const fast = new Sampler({ ...options, seed: 9 }, 256, addon.sampleToken);
      const history: number[] = [];
      for (let k = 0; k < 60; k++) {
        const row = rng.floats(256, 3);
        if (k % 20 === 7) row[k] = NaN; // declined natively: both take the TypeScript path
        const outcome = (s: Sampler) => {
          try {
            return s.sample(row, history);
          } catch (err) {
            return (err as Error).message;
          }
        };
        const a = outcome(plain);
        expect({ k, options, token: outcome(fast) }).toEqual({ k, options, token: a });
        if (typeof a === 'number') history.push(a);
      }
      expect(Array.from(fast.rngState)).toEqual(Array.from(plain.rngState));
    }
  });

  test('bad arguments throw INVALID_ARGUMENT', () => {
    const sampling = new Sampler({ seed: 1 }, 8).nativeParams();
    const good = { logits: new Float32Array(8), sampling, rngState: new Uint32Array(4), recent: new Int32Array(0) };
    for (const [bad, pattern] of [
      [{ ...good, logits: new Float32Array(0) }, /empty/],
      [{ ...good, rngState: new Uint32Array(3) }, /rngState/],
      [{ ...good, sampling: { ...sampling, topP: 0 } }, /topP/],
      [{ ...good, sampling: { ...sampling, biasIds: Int32Array.of(8), biasValues: Float64Array.of(1) } }, /biasIds\[0\]/],
      [{ ...good, recent: [1, 2] as unknown as Int32Array }, /recent/],
    ] as const) {
      let err: { code?: string; message?: string } = {};
      try {
        addon.sampleToken(bad as never);
      } catch (e) {
        err = e as typeof err;
      }
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toMatch(pattern);
    }
  });
});

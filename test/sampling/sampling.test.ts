/** Sampling transforms against hand-computed values, and the seeded sampler's reproducibility. */
import { InvalidArgumentError } from '../../lib/errors';
import {
  Prng,
  Sampler,
  applyLogitBias,
  applyMinP,
  applyPenalties,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  logSumExp,
  negativeLogLikelihood,
  rankedIds,
  resolveSamplingOptions,
  sampleFromLogits,
  softmax,
} from '../../lib/sampling';

const f32 = (xs: number[]) => Float32Array.from(xs);
const NEG = -Infinity;
/** logits whose softmax is exactly the given probabilities (up to float rounding) */
const fromProbs = (ps: number[]) => f32(ps.map(Math.log));

describe('pure transforms', () => {
  test('argmax: first of equal maxima; -1 when nothing is finite', () => {
    expect(argmax(f32([1, 3, 2, 3]))).toBe(1);
    expect(argmax(f32([NEG, NEG]))).toBe(-1);
    expect(argmax(f32([]))).toBe(-1);
  });

  test('softmax of log(1), log(2), log(3) is 1/6, 2/6, 3/6; -Infinity gets 0', () => {
    const p = softmax(f32([0, Math.log(2), Math.log(3), NEG]));
    expect(p[0]).toBeCloseTo(1 / 6, 6);
    expect(p[1]).toBeCloseTo(2 / 6, 6);
    expect(p[2]).toBeCloseTo(3 / 6, 6);
    expect(p[3]).toBe(0);
    expect(() => softmax(f32([NEG]))).toThrow(InvalidArgumentError);
    expect(() => softmax(f32([0, NaN]))).toThrow(/NaN/);
    // large logits do not overflow
    const q = softmax(f32([1000, 1000]));
    expect(Array.from(q)).toEqual([0.5, 0.5]);
  });

  test('logSumExp and the NLL of a token', () => {
    expect(logSumExp(f32([0, 0, 0, 0]))).toBeCloseTo(Math.log(4), 6);
    expect(negativeLogLikelihood(f32([0, Math.log(2), Math.log(3)]), 2)).toBeCloseTo(Math.log(2), 6); // -log(1/2)
    expect(negativeLogLikelihood(f32([0, Math.log(2), Math.log(3)]), 0)).toBeCloseTo(Math.log(6), 6);
    expect(() => negativeLogLikelihood(f32([0, 1]), 2)).toThrow(InvalidArgumentError);
  });

  test('temperature divides', () => {
    expect(Array.from(applyTemperature(f32([2, -4, NEG]), 2))).toEqual([1, -2, NEG]);
    expect(() => applyTemperature(f32([1]), 0)).toThrow(/temperature/);
  });

  test('rankedIds: by logit, then by id; -Infinity left out', () => {
    expect(Array.from(rankedIds(f32([1, 3, 2, 3, NEG])))).toEqual([1, 3, 2, 0]);
    expect(Array.from(rankedIds(f32([1, 3, 2, 3, NEG]), 3))).toEqual([1, 3, 2]);
    expect(Array.from(rankedIds(f32([5, 5, 5]), 2))).toEqual([0, 1]);
  });

  test('top-k keeps the k best, lower id on ties, and does not modify its input', () => {
    const l = f32([1, 3, 2, 3]);
    expect(Array.from(applyTopK(l, 2))).toEqual([NEG, 3, NEG, 3]);
    expect(Array.from(applyTopK(l, 1))).toEqual([NEG, 3, NEG, NEG]);
    expect(Array.from(applyTopK(l, 3))).toEqual([NEG, 3, 2, 3]);
    expect(Array.from(applyTopK(l, 10))).toEqual([1, 3, 2, 3]);
    expect(Array.from(l)).toEqual([1, 3, 2, 3]);
    expect(() => applyTopK(l, 0)).toThrow(/topK/);
  });

  test('top-p keeps the shortest ranked prefix reaching p', () => {
    const l = fromProbs([0.5, 0.2, 0.3]); // ranked: 0 (.5), 2 (.3), 1 (.2)
    const kept = (p: number) => Array.from(applyTopP(l, p)).map((x) => x !== NEG);
    expect(kept(0.1)).toEqual([true, false, false]); // the best id always stays
    expect(kept(0.5)).toEqual([true, false, false]);
    expect(kept(0.6)).toEqual([true, false, true]);
    expect(kept(0.79)).toEqual([true, false, true]);
    expect(kept(0.81)).toEqual([true, true, true]);
    expect(kept(1)).toEqual([true, true, true]);
    expect(() => applyTopP(l, 0)).toThrow(/topP/);
  });

  test('min-p keeps ids with p >= minP · p_max', () => {
    const l = fromProbs([0.5, 0.2, 0.3]);
    const kept = (p: number) => Array.from(applyMinP(l, p)).map((x) => x !== NEG);
    expect(kept(0.5)).toEqual([true, false, true]); // threshold 0.25
    expect(kept(0.3)).toEqual([true, true, true]); // threshold 0.15
    expect(kept(0.7)).toEqual([true, false, false]); // threshold 0.35
    expect(kept(0)).toEqual([true, true, true]);
    expect(() => applyMinP(l, 1.5)).toThrow(/minP/);
  });

  test('repetition, presence and frequency penalties (llama.cpp definition)', () => {
    // id 0 seen twice, ids 1 and 3 once; repeat 2, presence 0.5, frequency 0.25
    const out = applyPenalties(f32([2, -2, 1, 0.5]), [0, 1, 0, 3], { repeatPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25 });
    expect(out[0]).toBeCloseTo(2 / 2 - 2 * 0.25 - 0.5, 6); // 0
    expect(out[1]).toBeCloseTo(-2 * 2 - 0.25 - 0.5, 6); // -4.75
    expect(out[2]).toBe(1); // unseen
    expect(out[3]).toBeCloseTo(0.5 / 2 - 0.25 - 0.5, 6); // -0.5
    // ids outside the row are ignored; an empty window changes nothing
    expect(Array.from(applyPenalties(f32([1, 2]), [7, -1], { repeatPenalty: 3 }))).toEqual([1, 2]);
    expect(Array.from(applyPenalties(f32([1, 2]), [], { repeatPenalty: 3 }))).toEqual([1, 2]);
  });

  test('logit bias adds, -Infinity bans', () => {
    const out = applyLogitBias(f32([1, 2, 3]), new Map([[1, NEG], [2, 0.5]]));
    expect(Array.from(out)).toEqual([1, NEG, 3.5]);
    expect(() => applyLogitBias(f32([1]), new Map([[3, 1]]))).toThrow(InvalidArgumentError);
  });

  test('sampleFromLogits inverts the CDF in id order', () => {
    const l = f32([0, Math.log(2), Math.log(3)]); // CDF 1/6, 1/2, 1
    expect(sampleFromLogits(l, 0)).toBe(0);
    expect(sampleFromLogits(l, 0.1)).toBe(0);
    expect(sampleFromLogits(l, 0.2)).toBe(1);
    expect(sampleFromLogits(l, 0.4)).toBe(1);
    expect(sampleFromLogits(l, 0.6)).toBe(2);
    expect(sampleFromLogits(l, 0.999999)).toBe(2);
    expect(sampleFromLogits(f32([NEG, 0, NEG]), 0.999999)).toBe(1);
    expect(() => sampleFromLogits(l, 1)).toThrow(InvalidArgumentError);
  });
});

describe('Prng', () => {
  test('same seed, same stream; different seeds, different streams', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const c = new Prng(43);
    const xa = Array.from({ length: 50 }, () => a.next());
    const xb = Array.from({ length: 50 }, () => b.next());
    const xc = Array.from({ length: 50 }, () => c.next());
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
    expect(new Prng(2 ** 40).next()).not.toBe(new Prng(0).next()); // high bits of large seeds count
  });

  test('uniform in [0, 1): bucket counts pass a chi-square check', () => {
    const rng = new Prng(7);
    const buckets = new Array(10).fill(0);
    const n = 100000;
    for (let i = 0; i < n; i++) {
      const x = rng.next();
      expect(x >= 0 && x < 1).toBe(true);
      buckets[Math.floor(x * 10)]++;
    }
    const chi2 = buckets.reduce((s, o) => s + (o - n / 10) ** 2 / (n / 10), 0);
    expect(chi2).toBeLessThan(27.9); // p = 0.001 at 9 degrees of freedom
  });
});

describe('Sampler', () => {
  test('temperature 0 is argmax, after penalties and bias', () => {
    const l = f32([3, 2.9, 1]);
    expect(new Sampler({ temperature: 0 }).sample(l)).toBe(0);
    expect(new Sampler({ temperature: 0, repeatPenalty: 1.5 }).sample(l, [0])).toBe(1); // 3/1.5 = 2 < 2.9
    expect(new Sampler({ temperature: 0, penaltyLastN: 1, repeatPenalty: 1.5 }).sample(l, [0, 1])).toBe(0); // only [1] is looked at
    expect(new Sampler({ temperature: 0, logitBias: { 2: 5 } }).sample(l)).toBe(2);
  });

  test('the same seed gives the same tokens', () => {
    const rows = Array.from({ length: 30 }, (_, r) => f32(Array.from({ length: 50 }, (_, i) => Math.sin(r * 13 + i * 7))));
    const run = (seed: number) => {
      const s = new Sampler({ seed, temperature: 1, topK: 0, topP: 1, minP: 0 });
      return rows.map((row) => s.sample(row));
    };
    expect(run(123)).toEqual(run(123));
    expect(run(123)).not.toEqual(run(124));
  });

  test('draws follow softmax(logits / temperature)', () => {
    const s = new Sampler({ seed: 9, temperature: 0.5, topK: 0, topP: 1, minP: 0 });
    // logits/0.5 = log(1), log(2), log(3) → 1/6, 2/6, 3/6
    const l = f32([0, Math.log(2) / 2, Math.log(3) / 2]);
    const counts = [0, 0, 0];
    const n = 30000;
    for (let i = 0; i < n; i++) counts[s.sample(l)]++;
    expect(counts[0] / n).toBeCloseTo(1 / 6, 1.5);
    expect(counts[1] / n).toBeCloseTo(2 / 6, 1.5);
    expect(counts[2] / n).toBeCloseTo(3 / 6, 1.5);
  });

  test('filters chain: top-k 2 never yields the third id', () => {
    const s = new Sampler({ seed: 1, temperature: 1, topK: 2, topP: 1, minP: 0 });
    const l = f32([1, 1.1, 1.2]);
    for (let i = 0; i < 500; i++) expect(s.sample(l)).not.toBe(0);
  });

  test('defaults', () => {
    const o = resolveSamplingOptions({ seed: 1 });
    expect(o).toMatchObject({ temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, penaltyLastN: 64, seed: 1 });
    expect(Number.isFinite(resolveSamplingOptions({}).seed)).toBe(true);
  });

  test.each([
    [{ temperature: -1 }, /temperature/],
    [{ temperature: NaN }, /temperature/],
    [{ topK: 1.5 }, /topK/],
    [{ topK: -1 }, /topK/],
    [{ topP: 0 }, /topP/],
    [{ topP: NaN }, /topP/],
    [{ minP: 2 }, /minP/],
    [{ repeatPenalty: 0 }, /repeatPenalty/],
    [{ presencePenalty: Infinity }, /presencePenalty/],
    [{ frequencyPenalty: NaN }, /frequencyPenalty/],
    [{ penaltyLastN: -1 }, /penaltyLastN/],
    [{ penaltyLastN: 1e9 }, /penaltyLastN/],
    [{ seed: NaN }, /seed/],
    [{ logitBias: { 10: 1 } }, /logitBias key 10/],
    [{ logitBias: { 1: NaN } }, /logitBias\[1\]/],
  ])('invalid %p → InvalidArgumentError naming the option', (options, message) => {
    expect(() => resolveSamplingOptions(options as never, 5)).toThrow(InvalidArgumentError);
    expect(() => resolveSamplingOptions(options as never, 5)).toThrow(message);
  });
});

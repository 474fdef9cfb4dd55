/**
 * The block formats, checked from the layout itself (hand-made bytes whose values are known) and by
 * quantize -> dequantize error bounds. Agreement with llama.cpp's own dequantization is in
 * synthetic.test.ts.
 */
import { GgmlType } from '../../lib/gguf';
import { floatToHalfBits } from '../../lib/util/half';
import { dequantize, quantize, floatToBf16Bits } from '../reference/forward';
import { Rng } from '../helpers/random';

const ONE = floatToHalfBits(1); // 0x3c00
const HALF = floatToHalfBits(0.5);

function bytes(...parts: (number[] | Uint8Array)[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => Array.from(p)));
}
const le16 = (v: number) => [v & 0xff, v >>> 8];
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
/** qs[j] = low nibble lo(j), high nibble hi(j). */
const nibbles = (lo: (j: number) => number, hi: (j: number) => number) => Array.from({ length: 16 }, (_, j) => lo(j) | (hi(j) << 4));
const range = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));

describe('dequantize: layouts', () => {
  test('F32, F16, BF16', () => {
    expect(Array.from(dequantize(GgmlType.F32, new Uint8Array(new Float32Array([1.5, -2]).buffer), 2))).toEqual([1.5, -2]);
    expect(Array.from(dequantize(GgmlType.F16, bytes(le16(ONE), le16(0xc000)), 2))).toEqual([1, -2]);
    expect(Array.from(dequantize(GgmlType.BF16, bytes(le16(0x3f80), le16(0xc0a0)), 2))).toEqual([1, -5]);
    expect(floatToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie to even
    expect(floatToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
  });

  test('Q8_0: f16 scale, 32 signed bytes', () => {
    const q = range(32, (j) => j - 16);
    const got = dequantize(GgmlType.Q8_0, bytes(le16(HALF), new Uint8Array(Int8Array.from(q).buffer)), 32);
    expect(Array.from(got)).toEqual(q.map((v) => v * 0.5));
  });

  test('Q4_0: element j is the low nibble of byte j, element j+16 the high nibble; offset 8', () => {
    const got = dequantize(GgmlType.Q4_0, bytes(le16(ONE), nibbles((j) => j, (j) => 15 - j)), 32);
    expect(Array.from(got)).toEqual([...range(16, (j) => j - 8), ...range(16, (j) => 7 - j)]);
  });

  test('Q4_1: scale and minimum', () => {
    const got = dequantize(GgmlType.Q4_1, bytes(le16(HALF), le16(floatToHalfBits(-3)), nibbles((j) => j, (j) => 15 - j)), 32);
    expect(Array.from(got)).toEqual([...range(16, (j) => j * 0.5 - 3), ...range(16, (j) => (15 - j) * 0.5 - 3)]);
  });

  test('Q5_0: bit j of qh is bit 4 of element j, bit j+16 that of element j+16; offset 16', () => {
    const qh = 0b1010_0000_0000_0001_1100_0000_0000_0011; // elements 0,1,14,15 and 16,29,31 get +16
    const got = dequantize(GgmlType.Q5_0, bytes(le16(ONE), le32(qh >>> 0), nibbles((j) => j, () => 1)), 32);
    const want = [...range(16, (j) => j + ((qh >>> j) & 1) * 16 - 16), ...range(16, (j) => 1 + ((qh >>> (j + 16)) & 1) * 16 - 16)];
    expect(Array.from(got)).toEqual(want);
  });

  test('Q5_1: scale, minimum, high bits', () => {
    const qh = 0xffff0000;
    const got = dequantize(GgmlType.Q5_1, bytes(le16(ONE), le16(floatToHalfBits(0.25)), le32(qh), nibbles(() => 3, () => 3)), 32);
    expect(Array.from(got)).toEqual([...range(16, () => 3.25), ...range(16, () => 19.25)]);
  });

  test('other types are unsupported in reference', () => {
    expect(() => dequantize(GgmlType.Q4_K, new Uint8Array(144), 256)).toThrow(/unsupported in reference/);
  });
});

describe('quantize -> dequantize error bounds', () => {
  const rng = new Rng(99);
  const x = rng.floats(32 * 64, 1.3);
  // Per 32-block: the step is d (max/127, max/8, range/15, max/16, range/31); rounding costs d/2,
  // and storing d (and the minimum) in f16 adds at most |q| * |d| * 2^-11 (+ |min| * 2^-11).
  // Q4_0 and Q5_0 have one level fewer on the side opposite the largest magnitude (q - 8 in
  // [-8, 7]), so the value at -max is clamped a whole step off.
  const cases: [GgmlType, (b: Float32Array) => number][] = [
    [GgmlType.Q8_0, (b) => Math.max(...b.map(Math.abs)) / 127],
    [GgmlType.Q4_0, (b) => Math.max(...b.map(Math.abs)) / 8],
    [GgmlType.Q5_0, (b) => Math.max(...b.map(Math.abs)) / 16],
    [GgmlType.Q4_1, (b) => (Math.max(...b) - Math.min(...b)) / 15],
    [GgmlType.Q5_1, (b) => (Math.max(...b) - Math.min(...b)) / 31],
  ];
  test.each(cases.map(([t, step]) => [GgmlType[t], t, step] as const))('%s', (_name, type, step) => {
    const y = dequantize(type, quantize(type, x), x.length);
    for (let b = 0; b < x.length / 32; b++) {
      const blk = x.subarray(b * 32, b * 32 + 32);
      const d = step(blk);
      const clampStep = type === GgmlType.Q4_0 || type === GgmlType.Q5_0 ? 1 : 0.5;
      const bound = d * clampStep + 32 * d * 2 ** -11 + Math.max(...blk.map(Math.abs)) * 2 ** -10;
      for (let j = 0; j < 32; j++) expect(Math.abs(y[b * 32 + j] - blk[j])).toBeLessThanOrEqual(bound);
    }
  });

  test('F16 and BF16 round to nearest', () => {
    const h = dequantize(GgmlType.F16, quantize(GgmlType.F16, x), x.length);
    const b = dequantize(GgmlType.BF16, quantize(GgmlType.BF16, x), x.length);
    x.forEach((v, i) => {
      expect(Math.abs(h[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25);
      expect(Math.abs(b[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8);
    });
  });

  test('an all-zero block stays zero', () => {
    for (const t of [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1]) {
      expect(Array.from(dequantize(t, quantize(t, new Float32Array(32)), 32)).every((v) => v === 0)).toBe(true);
    }
  });
});

/**
 * Opt-in emulation of the two roundings ggml's CPU backend adds on top of the exact math, so tests
 * can compare the reference with llama.cpp tightly (and so tell a wrong dequantization from noise):
 *
 * - Matmul activations. ggml's CPU dot products take the activation row in the weight type's
 *   "vec_dot_type": Q4_0, Q5_0, Q8_0 -> Q8_0 blocks; Q4_1, Q5_1 -> Q8_1 blocks (same values as Q8_0
 *   plus a per-block f16 sum used with the weight's min); BF16 -> bf16. F32 weights see the
 *   activations unrounded. F16 weights depend on the CPU: where ggml takes its f16 dot products
 *   (vec_dot_type F16; seen on an AMD EPYC with AVX-512) the activations are rounded to f16 first
 *   (`f16Activations`), where it takes its f32 sgemm (seen on an Intel Xeon) they are not.
 * - GELU. ggml's CPU gelu looks the value up in a table indexed by the f16 input and stores f16
 *   outputs (|x| < 10), i.e. gelu(x) ~= f16(gelu(f16(x))).
 *
 * The Q8_1 per-block sum is emulated through `blockSumCorrection` (the weight's block minimum times
 * the difference between the f16 sum and the sum of the rounded values).
 */
import { GgmlType } from '../../../lib/gguf';
import { floatToHalfBits, halfBitsToFloat } from '../../../lib/util/half';
import { floatToBf16Bits, QK } from './blocks';

const fr = Math.fround;
const half = (x: number) => halfBitsToFloat(floatToHalfBits(x));
const roundAway = (x: number) => Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bf16 = (x: number) => {
  u32[0] = floatToBf16Bits(x) << 16;
  return f32[0];
};

export interface RoundedActivations {
  /** The values the dot product effectively uses. */
  x: Float64Array;
  /** Q8_1 only: per block, f16(d * sum(q)) - sum(x), which multiplies the weight's block minimum. */
  blockSumCorrection?: Float64Array;
}

/**
 * The activation row `x` as ggml's CPU matmul against a `type` weight sees it; `f16Activations`:
 * rounded to f16 for F16 weights (see above).
 */
export function roundActivations(type: GgmlType, x: ArrayLike<number>, f16Activations = false): RoundedActivations {
  switch (type) {
    case GgmlType.F16:
      return { x: Float64Array.from(x, (v) => (f16Activations ? half(v) : fr(v))) };
    case GgmlType.BF16:
      return { x: Float64Array.from(x, (v) => bf16(v)) };
    case GgmlType.Q4_0:
    case GgmlType.Q5_0:
    case GgmlType.Q8_0:
    case GgmlType.Q4_1:
    case GgmlType.Q5_1: {
      const withSum = type === GgmlType.Q4_1 || type === GgmlType.Q5_1;
      const out = new Float64Array(x.length);
      const corr = new Float64Array(x.length / QK);
      for (let b = 0; b < x.length / QK; b++) {
        let amax = 0;
        for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(fr(x[b * QK + j])));
        const d = fr(amax / 127);
        const id = d ? fr(1 / d) : 0;
        const dh = half(d);
        let sumQ = 0;
        let sumX = 0;
        for (let j = 0; j < QK; j++) {
          const q = roundAway(fr(fr(x[b * QK + j]) * id));
          sumQ += q;
          out[b * QK + j] = dh * q;
          sumX += dh * q;
        }
        corr[b] = half(fr(d * sumQ)) - sumX;
      }
      return withSum ? { x: out, blockSumCorrection: corr } : { x: out };
    }
    default:
      return { x: Float64Array.from(x, (v) => fr(v)) };
  }
}

/** ggml's CPU gelu: f16 table lookup of the tanh approximation. */
export function ggmlCpuGelu(x: number, gelu: (x: number) => number): number {
  const xf = fr(x);
  if (xf <= -10) return 0;
  if (xf >= 10) return xf;
  return half(fr(gelu(half(xf))));
}

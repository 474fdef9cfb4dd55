/**
 * ggml tensor storage formats, written from the block layouts (ggml-common.h `block_q*` structs,
 * all little-endian, no padding), one plain loop per format: dequantize (what a GGUF reader must do)
 * and quantize (what the synthetic-model writer needs; the rounding follows ggml's reference
 * quantizers, so files look like llama-quantize output, but nothing depends on bit-equality).
 *
 *   Q8_0  34 B / 32: f16 d, i8 q[32]                          x = d*q
 *   Q4_0  18 B / 32: f16 d, u8 qs[16]                         x = d*(nibble - 8)
 *   Q4_1  20 B / 32: f16 d, f16 m, u8 qs[16]                  x = d*nibble + m
 *   Q5_0  22 B / 32: f16 d, u32 qh, u8 qs[16]                 x = d*(nibble | bit<<4) - 16*d
 *   Q5_1  24 B / 32: f16 d, f16 m, u32 qh, u8 qs[16]          x = d*(nibble | bit<<4) + m
 * In the 4/5-bit formats element j < 16 is the low nibble of qs[j] (high bit: qh bit j) and
 * element j + 16 the high nibble of qs[j] (high bit: qh bit j + 16).
 */
import { GgmlType } from '../../../lib/gguf';
import { floatToHalfBits, halfBitsToFloat } from '../../../lib/util/half';

export const QK = 32;

/** Types the reference reads; others throw "unsupported in reference". */
export const REFERENCE_TYPES: readonly GgmlType[] = [
  GgmlType.F32, GgmlType.F16, GgmlType.BF16,
  GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
];

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bf16BitsToFloat(bits: number): number {
  u32[0] = bits << 16;
  return f32[0];
}

/** fp32 -> bf16, round to nearest even (NaN kept quiet), as ggml_compute_fp32_to_bf16. */
export function floatToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 64) & 0xffff;
  return ((x + (0x7fff + ((x >>> 16) & 1))) >>> 16) & 0xffff;
}

/** `n` elements of `type` stored at data[0..]: their values (exact: every format widens into f32). */
export function dequantize(type: GgmlType, data: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const h = (at: number) => halfBitsToFloat(dv.getUint16(at, true));
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    case GgmlType.F16:
      for (let i = 0; i < n; i++) out[i] = h(2 * i);
      return out;
    case GgmlType.BF16:
      for (let i = 0; i < n; i++) out[i] = bf16BitsToFloat(dv.getUint16(2 * i, true));
      return out;
    case GgmlType.Q8_0:
      for (let b = 0; b < n / QK; b++) {
        const at = b * 34;
        const d = h(at);
        for (let j = 0; j < QK; j++) out[b * QK + j] = d * dv.getInt8(at + 2 + j);
      }
      return out;
    case GgmlType.Q4_0:
    case GgmlType.Q4_1: {
      const withMin = type === GgmlType.Q4_1;
      const size = withMin ? 20 : 18;
      for (let b = 0; b < n / QK; b++) {
        const at = b * size;
        const d = h(at);
        const m = withMin ? h(at + 2) : -8 * d;
        const qs = at + (withMin ? 4 : 2);
        for (let j = 0; j < 16; j++) {
          const byte = data[qs + j];
          out[b * QK + j] = d * (byte & 0x0f) + m;
          out[b * QK + j + 16] = d * (byte >>> 4) + m;
        }
      }
      return out;
    }
    case GgmlType.Q5_0:
    case GgmlType.Q5_1: {
      const withMin = type === GgmlType.Q5_1;
      const size = withMin ? 24 : 22;
      for (let b = 0; b < n / QK; b++) {
        const at = b * size;
        const d = h(at);
        const m = withMin ? h(at + 2) : -16 * d;
        const qh = dv.getUint32(at + (withMin ? 4 : 2), true);
        const qs = at + (withMin ? 8 : 6);
        for (let j = 0; j < 16; j++) {
          const byte = data[qs + j];
          const lo = (byte & 0x0f) | (((qh >>> j) & 1) << 4);
          const hi = (byte >>> 4) | (((qh >>> (j + 16)) & 1) << 4);
          out[b * QK + j] = d * lo + m;
          out[b * QK + j + 16] = d * hi + m;
        }
      }
      return out;
    }
    default:
      throw new Error(`tensor type ${GgmlType[type] ?? type} is unsupported in reference`);
  }
}

/** Q4_1 / Q5_1: the minimum `m` of every block, in order (what ggml multiplies with the activations' block sums). */
export function blockMins(type: GgmlType, data: Uint8Array, n: number): Float32Array {
  const size = type === GgmlType.Q4_1 ? 20 : type === GgmlType.Q5_1 ? 24 : 0;
  if (size === 0) throw new Error(`${GgmlType[type] ?? type} blocks have no minimum`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return Float32Array.from({ length: n / QK }, (_, b) => halfBitsToFloat(dv.getUint16(b * size + 2, true)));
}

// C's roundf: halves away from zero.
const roundAway = (x: number) => Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
// Every quantizer computes in float32, as ggml does.
const fr = Math.fround;

/** Encode `values` (length a multiple of 32 for block types) in `type`. */
export function quantize(type: GgmlType, values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  if (type !== GgmlType.F32 && type !== GgmlType.F16 && type !== GgmlType.BF16 && n % QK !== 0) {
    throw new Error(`${GgmlType[type]} needs a multiple of ${QK} values, got ${n}`);
  }
  const sizeOf: Partial<Record<GgmlType, number>> = {
    [GgmlType.Q8_0]: 34, [GgmlType.Q4_0]: 18, [GgmlType.Q4_1]: 20, [GgmlType.Q5_0]: 22, [GgmlType.Q5_1]: 24,
  };
  const bytes =
    type === GgmlType.F32 ? 4 * n : type === GgmlType.F16 || type === GgmlType.BF16 ? 2 * n : (n / QK) * (sizeOf[type] ?? 0);
  if (bytes === 0 && n > 0) throw new Error(`cannot quantize to ${GgmlType[type] ?? type}`);
  const out = new Uint8Array(bytes);
  const dv = new DataView(out.buffer);
  const putHalf = (at: number, v: number) => dv.setUint16(at, floatToHalfBits(v), true);
  const block = (b: number) => Array.from({ length: QK }, (_, j) => fr(values[b * QK + j]));

  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, values[i], true);
      return out;
    case GgmlType.F16:
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, floatToHalfBits(values[i]), true);
      return out;
    case GgmlType.BF16:
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, floatToBf16Bits(values[i]), true);
      return out;
    case GgmlType.Q8_0:
      for (let b = 0; b < n / QK; b++) {
        const x = block(b);
        const amax = Math.max(...x.map(Math.abs));
        const d = fr(amax / 127);
        const id = d ? fr(1 / d) : 0;
        putHalf(b * 34, d);
        for (let j = 0; j < QK; j++) dv.setInt8(b * 34 + 2 + j, roundAway(fr(x[j] * id)));
      }
      return out;
    case GgmlType.Q4_0:
    case GgmlType.Q5_0: {
      const five = type === GgmlType.Q5_0;
      const size = five ? 22 : 18;
      const levels = five ? 16 : 8; // d = max / -levels; q = trunc(x/d + levels + 0.5), capped
      for (let b = 0; b < n / QK; b++) {
        const x = block(b);
        let max = 0;
        for (const v of x) if (Math.abs(v) > Math.abs(max)) max = v;
        const d = fr(max / -levels);
        const id = d ? fr(1 / d) : 0;
        putHalf(b * size, d);
        const q = x.map((v) => Math.min(2 * levels - 1, Math.trunc(fr(fr(v * id) + levels + 0.5))));
        packNibbles(out, dv, b * size + (five ? 6 : 2), five ? b * size + 2 : -1, q);
      }
      return out;
    }
    case GgmlType.Q4_1:
    case GgmlType.Q5_1: {
      const five = type === GgmlType.Q5_1;
      const size = five ? 24 : 20;
      const top = five ? 31 : 15;
      for (let b = 0; b < n / QK; b++) {
        const x = block(b);
        const min = Math.min(...x);
        const max = Math.max(...x);
        const d = fr(fr(max - min) / top);
        const id = d ? fr(1 / d) : 0;
        putHalf(b * size, d);
        putHalf(b * size + 2, min);
        const q = x.map((v) => Math.min(top, Math.trunc(fr(fr(fr(v - min) * id) + 0.5))));
        packNibbles(out, dv, b * size + (five ? 8 : 4), five ? b * size + 4 : -1, q);
      }
      return out;
    }
    default:
      throw new Error(`cannot quantize to ${GgmlType[type] ?? type}`);
  }
}

/** Low nibbles of q[0..15], high nibbles of q[16..31]; bit 4 of q[j] into qh bit j (when qhAt >= 0). */
function packNibbles(out: Uint8Array, dv: DataView, qsAt: number, qhAt: number, q: number[]): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    out[qsAt + j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
    qh |= ((q[j] >>> 4) & 1) << j;
    qh |= ((q[j + 16] >>> 4) & 1) << (j + 16);
  }
  if (qhAt >= 0) dv.setUint32(qhAt, qh >>> 0, true);
}

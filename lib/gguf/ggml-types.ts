/**
 * Storage facts for every ggml tensor type a GGUF file may name: how many
 * elements one block holds and how many bytes it takes. Values checked against
 * the pinned ggml tree (ggml.c `type_traits`, ggml-common.h block structs).
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { GgmlType } from './types';

export interface GgmlTypeInfo {
  type: GgmlType;
  /** The enum name, e.g. `Q4_K` (what `inspect` prints). */
  name: string;
  /** ggml's own `type_name`, e.g. `q4_K`. */
  ggmlName: string;
  /** Elements per block (1 for plain types). */
  blockSize: number;
  /** Bytes per block. */
  bytesPerBlock: number;
  quantized: boolean;
}

const QK_K = 256;

// [type, ggml name, elements per block, bytes per block]; the byte counts
// are the sizes of the ggml block structs (sums of their fields, no padding).
const TABLE: ReadonlyArray<readonly [GgmlType, string, number, number]> = [
  [GgmlType.F32, 'f32', 1, 4],
  [GgmlType.F16, 'f16', 1, 2],
  [GgmlType.Q4_0, 'q4_0', 32, 2 + 16],
  [GgmlType.Q4_1, 'q4_1', 32, 2 * 2 + 16],
  [GgmlType.Q5_0, 'q5_0', 32, 2 + 4 + 16],
  [GgmlType.Q5_1, 'q5_1', 32, 2 * 2 + 4 + 16],
  [GgmlType.Q8_0, 'q8_0', 32, 2 + 32],
  [GgmlType.Q8_1, 'q8_1', 32, 2 * 2 + 32],
  [GgmlType.Q2_K, 'q2_K', QK_K, 2 * 2 + QK_K / 16 + QK_K / 4],
  [GgmlType.Q3_K, 'q3_K', QK_K, 2 + QK_K / 4 + QK_K / 8 + 12],
  [GgmlType.Q4_K, 'q4_K', QK_K, 2 * 2 + 12 + QK_K / 2],
  [GgmlType.Q5_K, 'q5_K', QK_K, 2 * 2 + 12 + QK_K / 2 + QK_K / 8],
  [GgmlType.Q6_K, 'q6_K', QK_K, 2 + QK_K / 16 + (3 * QK_K) / 4],
  [GgmlType.Q8_K, 'q8_K', QK_K, 4 + QK_K + (QK_K / 16) * 2],
  [GgmlType.IQ2_XXS, 'iq2_xxs', QK_K, 2 + (QK_K / 8) * 2],
  [GgmlType.IQ2_XS, 'iq2_xs', QK_K, 2 + (QK_K / 8) * 2 + QK_K / 32],
  [GgmlType.IQ3_XXS, 'iq3_xxs', QK_K, 2 + 3 * (QK_K / 8)],
  [GgmlType.IQ1_S, 'iq1_s', QK_K, 2 + QK_K / 8 + QK_K / 16],
  [GgmlType.IQ4_NL, 'iq4_nl', 32, 2 + 16],
  [GgmlType.IQ3_S, 'iq3_s', QK_K, 2 + 13 * (QK_K / 32) + QK_K / 64],
  [GgmlType.IQ2_S, 'iq2_s', QK_K, 2 + QK_K / 4 + QK_K / 16],
  [GgmlType.IQ4_XS, 'iq4_xs', QK_K, 2 + 2 + QK_K / 64 + QK_K / 2],
  [GgmlType.I8, 'i8', 1, 1],
  [GgmlType.I16, 'i16', 1, 2],
  [GgmlType.I32, 'i32', 1, 4],
  [GgmlType.I64, 'i64', 1, 8],
  [GgmlType.F64, 'f64', 1, 8],
  [GgmlType.IQ1_M, 'iq1_m', QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32],
  [GgmlType.BF16, 'bf16', 1, 2],
  [GgmlType.TQ1_0, 'tq1_0', QK_K, 2 + QK_K / 64 + (QK_K - (4 * QK_K) / 64) / 5],
  [GgmlType.TQ2_0, 'tq2_0', QK_K, 2 + QK_K / 4],
  [GgmlType.MXFP4, 'mxfp4', 32, 1 + 16],
  [GgmlType.NVFP4, 'nvfp4', 64, 64 / 16 + 32],
  [GgmlType.Q1_0, 'q1_0', 128, 2 + 128 / 8],
];

const PLAIN = new Set<GgmlType>([
  GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.F64,
  GgmlType.I8, GgmlType.I16, GgmlType.I32, GgmlType.I64,
]);

const INFO = new Map<number, GgmlTypeInfo>(
  TABLE.map(([type, ggmlName, blockSize, bytesPerBlock]) => [
    type,
    Object.freeze({
      type,
      name: GgmlType[type],
      ggmlName,
      blockSize,
      bytesPerBlock,
      quantized: !PLAIN.has(type),
    }),
  ]),
);

/** Every tensor type this package knows, in enum order. */
export const GGML_TYPES: readonly GgmlTypeInfo[] = Object.freeze(
  [...INFO.values()].sort((a, b) => a.type - b.type),
);

export function isKnownGgmlType(type: number): type is GgmlType {
  return INFO.has(type);
}

/** Storage facts for `type`; UnsupportedError for a number that names no known type. */
export function ggmlTypeInfo(type: number): GgmlTypeInfo {
  const info = INFO.get(type);
  if (info === undefined) {
    throw new UnsupportedError(`unknown ggml tensor type ${type} (known: ${GGML_TYPES.map((t) => `${t.type}=${t.name}`).join(', ')})`);
  }
  return info;
}

/** `Q4_K`-style name, or `type(<n>)` for an unknown number (never throws; for messages). */
export function ggmlTypeName(type: number): string {
  return INFO.get(type)?.name ?? `type(${type})`;
}

function checkDims(dims: readonly number[]): void {
  if (!Array.isArray(dims) || dims.length < 1 || dims.length > 4) {
    throw new InvalidArgumentError(`tensor dims must be an array of 1 to 4 sizes, got ${describeDims(dims)}`);
  }
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new InvalidArgumentError(`tensor dim ${i} must be a non-negative safe integer, got ${String(d)}`);
    }
  }
}

function describeDims(dims: unknown): string {
  return Array.isArray(dims) ? `[${dims.map(String).join(', ')}]` : String(dims);
}

/** a * b, or undefined when the product passes Number.MAX_SAFE_INTEGER. */
function safeMul(a: number, b: number): number | undefined {
  if (a === 0 || b === 0) return 0;
  if (a > Math.floor(Number.MAX_SAFE_INTEGER / b)) return undefined;
  return a * b;
}

/**
 * Product of the non-zero dims; InvalidArgumentError above 2^53. Checked even
 * when a dim is zero, so no consumer multiplying the dims in int64 can overflow.
 */
function nonZeroProduct(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) {
    if (d === 0) continue;
    const m = safeMul(n, d);
    if (m === undefined) throw new InvalidArgumentError(`tensor of shape ${describeDims(dims)} has more than 2^53 elements`);
    n = m;
  }
  return n;
}

/** Number of elements of a tensor with these dims (InvalidArgumentError if not a safe integer). */
export function tensorElementCount(dims: readonly number[]): number {
  checkDims(dims);
  const n = nonZeroProduct(dims);
  return dims.includes(0) ? 0 : n;
}

/**
 * Bytes taken by a tensor of `type` and `dims` (ggml order, dims[0] = row
 * length). dims[0] must be a multiple of the type's block size. Throws
 * UnsupportedError for an unknown type and InvalidArgumentError for bad dims, or
 * an element count or size above Number.MAX_SAFE_INTEGER.
 */
export function tensorByteLength(type: GgmlType, dims: readonly number[]): number {
  const info = ggmlTypeInfo(type);
  checkDims(dims);
  if (dims[0] % info.blockSize !== 0) {
    throw new InvalidArgumentError(
      `tensor row length ${dims[0]} is not a multiple of the ${info.name} block size ${info.blockSize}`,
    );
  }
  nonZeroProduct(dims);
  if (dims.includes(0)) return 0;
  let bytes = safeMul(dims[0] / info.blockSize, info.bytesPerBlock);
  for (let i = 1; i < dims.length && bytes !== undefined; i++) bytes = safeMul(bytes, dims[i]);
  if (bytes === undefined) {
    throw new InvalidArgumentError(
      `${info.name} tensor of shape ${describeDims(dims)} is larger than Number.MAX_SAFE_INTEGER bytes`,
    );
  }
  return bytes;
}

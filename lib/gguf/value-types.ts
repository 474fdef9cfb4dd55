/** Facts about GGUF metadata value types shared by the reader, writer and describer. */
import { GgufValueType } from './types';

/** Bytes of one fixed-size value; undefined for STRING and ARRAY. */
export function scalarSize(type: GgufValueType): number | undefined {
  switch (type) {
    case GgufValueType.UINT8:
    case GgufValueType.INT8:
    case GgufValueType.BOOL:
      return 1;
    case GgufValueType.UINT16:
    case GgufValueType.INT16:
      return 2;
    case GgufValueType.UINT32:
    case GgufValueType.INT32:
    case GgufValueType.FLOAT32:
      return 4;
    case GgufValueType.UINT64:
    case GgufValueType.INT64:
    case GgufValueType.FLOAT64:
      return 8;
    default:
      return undefined;
  }
}

export function isValueType(type: number): type is GgufValueType {
  return Number.isInteger(type) && type >= GgufValueType.UINT8 && type <= GgufValueType.FLOAT64;
}

/**
 * Fewest bytes one element of `type` takes inside an array: its fixed size, a
 * string's 8-byte length, a nested array's 4-byte type + 8-byte count.
 */
export function minElementSize(type: GgufValueType): number {
  if (type === GgufValueType.STRING) return 8;
  if (type === GgufValueType.ARRAY) return 12;
  return scalarSize(type) ?? 1;
}

const SHORT_NAMES: Record<GgufValueType, string> = {
  [GgufValueType.UINT8]: 'u8',
  [GgufValueType.INT8]: 'i8',
  [GgufValueType.UINT16]: 'u16',
  [GgufValueType.INT16]: 'i16',
  [GgufValueType.UINT32]: 'u32',
  [GgufValueType.INT32]: 'i32',
  [GgufValueType.FLOAT32]: 'f32',
  [GgufValueType.BOOL]: 'bool',
  [GgufValueType.STRING]: 'string',
  [GgufValueType.ARRAY]: 'array',
  [GgufValueType.UINT64]: 'u64',
  [GgufValueType.INT64]: 'i64',
  [GgufValueType.FLOAT64]: 'f64',
};

/** `u32`, `string`, `array`, …; `type(<n>)` for a number that names no type. */
export function valueTypeName(type: number): string {
  return isValueType(type) ? SHORT_NAMES[type] : `type(${type})`;
}

/** True when this machine stores numbers little-endian (typed arrays can then be filled by byte copy). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

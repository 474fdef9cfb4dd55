/**
 * Typed access to GGUF metadata, and small constructors for building it.
 *
 * `getX(meta, key)` returns undefined when the key is absent and throws
 * GgufFormatError (naming the key) when it holds the wrong type;
 * `requireX(meta, key)` also throws when it is absent.
 */
import { GgufFormatError } from '../errors';
import { GgufArrayValue, GgufMetadata, GgufMetadataEntry, GgufValueType } from './types';
import { valueTypeName } from './value-types';

export type GgufNumberArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array;

function mismatch(key: string, entry: GgufMetadataEntry, wanted: string): GgufFormatError {
  const found = entry.type === GgufValueType.ARRAY
    ? `array of ${valueTypeName((entry.value as GgufArrayValue).elementType)}`
    : valueTypeName(entry.type);
  return new GgufFormatError(`metadata key "${key}" should be ${wanted}, but it is ${found}`);
}

function missing(key: string): GgufFormatError {
  return new GgufFormatError(`required metadata key "${key}" is missing`);
}

function toSafeNumber(key: string, v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new GgufFormatError(`metadata key "${key}" holds ${v}, which is beyond Number.MAX_SAFE_INTEGER`);
  }
  return Number(v);
}

export function getString(meta: GgufMetadata, key: string): string | undefined {
  const e = meta.get(key);
  if (e === undefined) return undefined;
  if (e.type !== GgufValueType.STRING) throw mismatch(key, e, 'a string');
  return e.value as string;
}

/** Any numeric type; a u64/i64 becomes a number if it is a safe integer. */
export function getNumber(meta: GgufMetadata, key: string): number | undefined {
  const e = meta.get(key);
  if (e === undefined) return undefined;
  switch (e.type) {
    case GgufValueType.UINT64:
    case GgufValueType.INT64:
      return toSafeNumber(key, e.value as bigint);
    case GgufValueType.STRING:
    case GgufValueType.BOOL:
    case GgufValueType.ARRAY:
      throw mismatch(key, e, 'a number');
    default:
      return e.value as number;
  }
}

/** Like getNumber, but the value must also be an integer (so not 2.5 or NaN). */
export function getInteger(meta: GgufMetadata, key: string): number | undefined {
  const v = getNumber(meta, key);
  if (v !== undefined && !Number.isSafeInteger(v)) {
    throw new GgufFormatError(`metadata key "${key}" should be an integer, but it is ${v}`);
  }
  return v;
}

export function getBool(meta: GgufMetadata, key: string): boolean | undefined {
  const e = meta.get(key);
  if (e === undefined) return undefined;
  if (e.type !== GgufValueType.BOOL) throw mismatch(key, e, 'a bool');
  return e.value as boolean;
}

/** The array with its element type, whatever that is. */
export function getArray(meta: GgufMetadata, key: string): GgufArrayValue | undefined {
  const e = meta.get(key);
  if (e === undefined) return undefined;
  if (e.type !== GgufValueType.ARRAY) throw mismatch(key, e, 'an array');
  return e.value as GgufArrayValue;
}

export function getStringArray(meta: GgufMetadata, key: string): string[] | undefined {
  const a = getArray(meta, key);
  if (a === undefined) return undefined;
  if (a.elementType !== GgufValueType.STRING) throw mismatch(key, meta.get(key)!, 'an array of strings');
  return a.values as string[];
}

/**
 * An array of any numeric element type, as a typed array (the stored one, not a
 * copy); u64/i64 arrays are converted to a Float64Array if every value is a safe integer.
 */
export function getNumberArray(meta: GgufMetadata, key: string): GgufNumberArray | undefined {
  const a = getArray(meta, key);
  if (a === undefined) return undefined;
  switch (a.elementType) {
    case GgufValueType.UINT64:
    case GgufValueType.INT64: {
      const src = a.values as BigUint64Array | BigInt64Array;
      const out = new Float64Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = toSafeNumber(key, src[i]);
      return out;
    }
    case GgufValueType.STRING:
    case GgufValueType.BOOL:
    case GgufValueType.ARRAY:
      throw mismatch(key, meta.get(key)!, 'an array of numbers');
    default:
      return a.values as GgufNumberArray;
  }
}

function required<T>(v: T | undefined, key: string): T {
  if (v === undefined) throw missing(key);
  return v;
}

export const requireString = (meta: GgufMetadata, key: string): string => required(getString(meta, key), key);
export const requireNumber = (meta: GgufMetadata, key: string): number => required(getNumber(meta, key), key);
export const requireInteger = (meta: GgufMetadata, key: string): number => required(getInteger(meta, key), key);
export const requireBool = (meta: GgufMetadata, key: string): boolean => required(getBool(meta, key), key);
export const requireArray = (meta: GgufMetadata, key: string): GgufArrayValue => required(getArray(meta, key), key);
export const requireStringArray = (meta: GgufMetadata, key: string): string[] =>
  required(getStringArray(meta, key), key);
export const requireNumberArray = (meta: GgufMetadata, key: string): GgufNumberArray =>
  required(getNumberArray(meta, key), key);

/**
 * Constructors for metadata entries, for building files with the writer:
 * `new Map([['llama.block_count', ggufValue.u32(5)], ['tokenizer.ggml.tokens', ggufValue.strings(toks)]])`.
 * Number arrays are copied into the typed array of their element type.
 */
export const ggufValue = {
  u8: (v: number): GgufMetadataEntry => ({ type: GgufValueType.UINT8, value: v }),
  i8: (v: number): GgufMetadataEntry => ({ type: GgufValueType.INT8, value: v }),
  u16: (v: number): GgufMetadataEntry => ({ type: GgufValueType.UINT16, value: v }),
  i16: (v: number): GgufMetadataEntry => ({ type: GgufValueType.INT16, value: v }),
  u32: (v: number): GgufMetadataEntry => ({ type: GgufValueType.UINT32, value: v }),
  i32: (v: number): GgufMetadataEntry => ({ type: GgufValueType.INT32, value: v }),
  f32: (v: number): GgufMetadataEntry => ({ type: GgufValueType.FLOAT32, value: v }),
  f64: (v: number): GgufMetadataEntry => ({ type: GgufValueType.FLOAT64, value: v }),
  u64: (v: bigint | number): GgufMetadataEntry => ({ type: GgufValueType.UINT64, value: BigInt(v) }),
  i64: (v: bigint | number): GgufMetadataEntry => ({ type: GgufValueType.INT64, value: BigInt(v) }),
  bool: (v: boolean): GgufMetadataEntry => ({ type: GgufValueType.BOOL, value: v }),
  string: (v: string): GgufMetadataEntry => ({ type: GgufValueType.STRING, value: v }),
  /** Any array value (use `arrayOf` helpers below to build nested ones). */
  array: (v: GgufArrayValue): GgufMetadataEntry => ({ type: GgufValueType.ARRAY, value: v }),
  strings: (v: readonly string[]): GgufMetadataEntry => ggufValue.array(arrayOf.strings(v)),
  bools: (v: readonly boolean[]): GgufMetadataEntry => ggufValue.array(arrayOf.bools(v)),
  u8s: (v: ArrayLike<number>): GgufMetadataEntry => ggufValue.array(arrayOf.u8s(v)),
  i8s: (v: ArrayLike<number>): GgufMetadataEntry => ggufValue.array(arrayOf.i8s(v)),
  u16s: (v: ArrayLike<number>): GgufMetadataEntry => ggufValue.array(arrayOf.u16s(v)),
  i16s: (v: ArrayLike<number>): GgufMetadataEntry => ggufValue.array(arrayOf.i16s(v)),
  u32s: (v: ArrayLike<number>): GgufMetadataEntry => ggufValue.array(arrayOf.u32s(v)),
  i32s: (v: ArrayLike<number>): GgufMetadataEntry => ggufValue.array(arrayOf.i32s(v)),
  f32s: (v: ArrayLike<number>): GgufMetadataEntry => ggufValue.array(arrayOf.f32s(v)),
  f64s: (v: ArrayLike<number>): GgufMetadataEntry => ggufValue.array(arrayOf.f64s(v)),
  u64s: (v: ArrayLike<bigint>): GgufMetadataEntry => ggufValue.array(arrayOf.u64s(v)),
  i64s: (v: ArrayLike<bigint>): GgufMetadataEntry => ggufValue.array(arrayOf.i64s(v)),
};

/** Array values (GgufArrayValue), usable as elements of a nested array. */
export const arrayOf = {
  strings: (v: readonly string[]): GgufArrayValue => ({ elementType: GgufValueType.STRING, values: [...v] }),
  bools: (v: readonly boolean[]): GgufArrayValue => ({ elementType: GgufValueType.BOOL, values: [...v] }),
  u8s: (v: ArrayLike<number>): GgufArrayValue => ({ elementType: GgufValueType.UINT8, values: Uint8Array.from(v) }),
  i8s: (v: ArrayLike<number>): GgufArrayValue => ({ elementType: GgufValueType.INT8, values: Int8Array.from(v) }),
  u16s: (v: ArrayLike<number>): GgufArrayValue => ({ elementType: GgufValueType.UINT16, values: Uint16Array.from(v) }),
  i16s: (v: ArrayLike<number>): GgufArrayValue => ({ elementType: GgufValueType.INT16, values: Int16Array.from(v) }),
  u32s: (v: ArrayLike<number>): GgufArrayValue => ({ elementType: GgufValueType.UINT32, values: Uint32Array.from(v) }),
  i32s: (v: ArrayLike<number>): GgufArrayValue => ({ elementType: GgufValueType.INT32, values: Int32Array.from(v) }),
  f32s: (v: ArrayLike<number>): GgufArrayValue => ({ elementType: GgufValueType.FLOAT32, values: Float32Array.from(v) }),
  f64s: (v: ArrayLike<number>): GgufArrayValue => ({ elementType: GgufValueType.FLOAT64, values: Float64Array.from(v) }),
  u64s: (v: ArrayLike<bigint>): GgufArrayValue => ({ elementType: GgufValueType.UINT64, values: BigUint64Array.from(v) }),
  i64s: (v: ArrayLike<bigint>): GgufArrayValue => ({ elementType: GgufValueType.INT64, values: BigInt64Array.from(v) }),
  arrays: (v: readonly GgufArrayValue[]): GgufArrayValue => ({ elementType: GgufValueType.ARRAY, values: [...v] }),
};

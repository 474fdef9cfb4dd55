/** GGUF metadata value types, as numbered in the file format. */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/**
 * A metadata value in memory. 64-bit integers are bigint so they stay exact.
 * Arrays of numbers are typed arrays of the matching width; arrays of strings,
 * bools and arrays are plain JS arrays.
 */
export type GgufScalar = number | bigint | boolean | string;
export type GgufArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigUint64Array | BigInt64Array
  | string[] | boolean[] | GgufArrayValue[];

/** A nested array keeps its element type so it can be written back unchanged. */
export interface GgufArrayValue {
  elementType: GgufValueType;
  values: GgufArray;
}

export type GgufValue = GgufScalar | GgufArrayValue;

export interface GgufMetadataEntry {
  type: GgufValueType;
  /** For type ARRAY this is a GgufArrayValue. */
  value: GgufValue;
}

export type GgufMetadata = Map<string, GgufMetadataEntry>;

/** ggml tensor types, as numbered in GGUF files (ggml.h `enum ggml_type`). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  /** Added after ggml 0.9; present in the pinned ggml tree (nodejs-whisper 0.3.1). */
  NVFP4 = 40,
  Q1_0 = 41,
}

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the fastest-varying (row length). */
  dims: number[];
  type: GgmlType;
  /** Offset relative to the start of the tensor data section, as stored in the file. */
  relativeOffset: number;
  /** Absolute byte offset in the file. */
  offset: number;
  /** Size of the tensor's data in bytes. */
  byteLength: number;
}

export interface GgufFile {
  version: 2 | 3;
  metadata: GgufMetadata;
  tensors: GgufTensorInfo[];
  alignment: number;
  /**
   * Absolute offset of the tensor data section: the end of the tensor table
   * rounded up to `alignment`. With no tensors it may lie past the end of the
   * file (vocab-only files are usually not padded).
   */
  dataOffset: number;
  /** Absolute offset just after the tensor table (before alignment padding). */
  headerByteLength: number;
  /** Size of the file (or buffer) that was read. */
  fileSize: number;
}

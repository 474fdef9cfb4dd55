/**
 * GGUF writer (v2 or v3, little-endian), mainly for tests that build synthetic
 * models. Layout as ggml writes it: header, metadata, tensor table, zero
 * padding to `alignment`, then each tensor's data padded to `alignment`.
 * Tensors are laid out in the order given.
 *
 * parseGguf(serializeGguf(spec)) gives back the same metadata (in the same
 * order; plus a `general.alignment` entry when `alignment` is given, is not 32
 * and the metadata lacks one) and the same tensors. FLOAT32 values are
 * rounded to float32 on the way.
 */
import { open } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors';
import { tensorByteLength } from './ggml-types';
import { GGUF_DEFAULT_ALIGNMENT, MAX_KEY_BYTES, MAX_TENSOR_NAME_BYTES } from './reader';
import { GgmlType, GgufArrayValue, GgufMetadata, GgufMetadataEntry, GgufValue, GgufValueType } from './types';
import { HOST_LITTLE_ENDIAN, isValueType, scalarSize, valueTypeName } from './value-types';

export interface GgufTensorHeaderSpec {
  name: string;
  type: GgmlType;
  /** ggml order: dims[0] is the row length. */
  dims: readonly number[];
}

export interface GgufTensorSpec extends GgufTensorHeaderSpec {
  data: Uint8Array;
}

export interface GgufHeaderSpec<T extends GgufTensorHeaderSpec = GgufTensorHeaderSpec> {
  /** Default 3. */
  version?: 2 | 3;
  metadata?: GgufMetadata | Readonly<Record<string, GgufMetadataEntry>>;
  tensors?: readonly T[];
  /** Power of two; default: the metadata's general.alignment, else 32. */
  alignment?: number;
}

export type GgufSpec = GgufHeaderSpec<GgufTensorSpec>;

export interface GgufLayout {
  /** Header, metadata, tensor table and padding: the data section starts at `header.length`. */
  header: Uint8Array;
  alignment: number;
  /** Offset of each tensor relative to the data section. */
  tensorOffsets: number[];
  tensorByteLengths: number[];
  /** Size of the data section, the last tensor padded to alignment. */
  dataByteLength: number;
  /** header.length + dataByteLength. */
  fileSize: number;
}

const encoder = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

class ByteWriter {
  buf = new Uint8Array(4096);
  view = new DataView(this.buf.buffer);
  len = 0;

  reserve(n: number): number {
    const need = this.len + n;
    if (need > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < need) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.len;
    this.len = need;
    return at;
  }

  // reserve() may swap the buffer, so it must run before this.buf/this.view are read.
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  u64(v: number | bigint): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }
  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
  }
  string(s: string): void {
    const b = encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
}

function fail(where: string, what: string): never {
  throw new InvalidArgumentError(`${where}: ${what}`);
}

function checkString(s: unknown, where: string): string {
  if (typeof s !== 'string') fail(where, `expected a string, got ${typeof s}`);
  if (LONE_SURROGATE.test(s)) fail(where, 'string contains a lone UTF-16 surrogate (not encodable as UTF-8)');
  return s;
}

const INT_RANGE: Partial<Record<GgufValueType, readonly [number, number]>> = {
  [GgufValueType.UINT8]: [0, 0xff],
  [GgufValueType.INT8]: [-0x80, 0x7f],
  [GgufValueType.UINT16]: [0, 0xffff],
  [GgufValueType.INT16]: [-0x8000, 0x7fff],
  [GgufValueType.UINT32]: [0, 0xffffffff],
  [GgufValueType.INT32]: [-0x80000000, 0x7fffffff],
};

const BIG_RANGE: Partial<Record<GgufValueType, readonly [bigint, bigint]>> = {
  [GgufValueType.UINT64]: [0n, 0xffffffffffffffffn],
  [GgufValueType.INT64]: [-0x8000000000000000n, 0x7fffffffffffffffn],
};

const TYPED_ARRAY_OF: Partial<Record<GgufValueType, Function>> = {
  [GgufValueType.UINT8]: Uint8Array,
  [GgufValueType.INT8]: Int8Array,
  [GgufValueType.UINT16]: Uint16Array,
  [GgufValueType.INT16]: Int16Array,
  [GgufValueType.UINT32]: Uint32Array,
  [GgufValueType.INT32]: Int32Array,
  [GgufValueType.FLOAT32]: Float32Array,
  [GgufValueType.FLOAT64]: Float64Array,
  [GgufValueType.UINT64]: BigUint64Array,
  [GgufValueType.INT64]: BigInt64Array,
};

/** Writes one fixed-size value of `type` after checking it fits. */
function writeScalar(w: ByteWriter, type: GgufValueType, v: unknown, where: string): void {
  const size = scalarSize(type)!;
  const range = INT_RANGE[type];
  const big = BIG_RANGE[type];
  if (range !== undefined) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      fail(where, `${valueTypeName(type)} must be an integer in [${range[0]}, ${range[1]}], got ${String(v)}`);
    }
  } else if (big !== undefined) {
    if (typeof v === 'number' && Number.isSafeInteger(v)) v = BigInt(v);
    if (typeof v !== 'bigint' || v < big[0] || v > big[1]) {
      fail(where, `${valueTypeName(type)} must be a bigint in [${big[0]}, ${big[1]}], got ${String(v)}`);
    }
  } else if (type === GgufValueType.BOOL) {
    if (typeof v !== 'boolean') fail(where, `bool must be a boolean, got ${typeof v}`);
  } else if (typeof v !== 'number') {
    fail(where, `${valueTypeName(type)} must be a number, got ${typeof v}`);
  }
  const at = w.reserve(size);
  const dv = w.view;
  switch (type) {
    case GgufValueType.UINT8: dv.setUint8(at, v as number); break;
    case GgufValueType.INT8: dv.setInt8(at, v as number); break;
    case GgufValueType.UINT16: dv.setUint16(at, v as number, true); break;
    case GgufValueType.INT16: dv.setInt16(at, v as number, true); break;
    case GgufValueType.UINT32: dv.setUint32(at, v as number, true); break;
    case GgufValueType.INT32: dv.setInt32(at, v as number, true); break;
    case GgufValueType.FLOAT32: dv.setFloat32(at, v as number, true); break;
    case GgufValueType.FLOAT64: dv.setFloat64(at, v as number, true); break;
    case GgufValueType.UINT64: dv.setBigUint64(at, v as bigint, true); break;
    case GgufValueType.INT64: dv.setBigInt64(at, v as bigint, true); break;
    case GgufValueType.BOOL: dv.setUint8(at, v ? 1 : 0); break;
  }
}

function writeArray(w: ByteWriter, arr: GgufArrayValue, where: string, depth: number): void {
  if (typeof arr !== 'object' || arr === null) fail(where, 'array value must be { elementType, values }');
  const { elementType, values } = arr;
  if (!isValueType(elementType)) fail(where, `unknown array element type ${String(elementType)}`);
  if (depth > 8) fail(where, 'arrays nested deeper than 8 levels');
  const list = values as ArrayLike<unknown>;
  if (typeof list !== 'object' || list === null || typeof list.length !== 'number') {
    fail(where, 'array values must be an array or typed array');
  }
  w.u32(elementType);
  w.u64(list.length);
  const typed = TYPED_ARRAY_OF[elementType];
  if (typed !== undefined && list instanceof typed && HOST_LITTLE_ENDIAN) {
    const t = list as unknown as Uint8Array;
    w.bytes(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
    return;
  }
  if (ArrayBuffer.isView(list) && typed === undefined) fail(where, `${valueTypeName(elementType)} array given as a typed array`);
  for (let i = 0; i < list.length; i++) {
    const v = list[i];
    const at = `${where}[${i}]`;
    if (elementType === GgufValueType.STRING) w.string(checkString(v, at));
    else if (elementType === GgufValueType.ARRAY) writeArray(w, v as GgufArrayValue, at, depth + 1);
    else writeScalar(w, elementType, v, at);
  }
}

function writeValue(w: ByteWriter, type: GgufValueType, value: GgufValue, where: string): void {
  if (type === GgufValueType.STRING) w.string(checkString(value, where));
  else if (type === GgufValueType.ARRAY) writeArray(w, value as GgufArrayValue, where, 1);
  else writeScalar(w, type, value, where);
}

function metadataEntries(metadata: GgufHeaderSpec['metadata']): Array<[string, GgufMetadataEntry]> {
  if (metadata === undefined) return [];
  if (metadata instanceof Map) return [...metadata.entries()];
  if (typeof metadata !== 'object' || metadata === null) throw new InvalidArgumentError('metadata must be a Map or an object');
  return Object.entries(metadata);
}

function isPowerOfTwoU32(a: unknown): a is number {
  return typeof a === 'number' && Number.isInteger(a) && a > 0 && a <= 0x80000000 && (a & (a - 1)) === 0;
}

/** Encodes everything but the tensor data; tells where each tensor's data goes. */
export function serializeGgufHeader(spec: GgufHeaderSpec): GgufLayout {
  if (typeof spec !== 'object' || spec === null) throw new InvalidArgumentError('GGUF spec must be an object');
  const version = spec.version ?? 3;
  if (version !== 2 && version !== 3) throw new InvalidArgumentError(`GGUF version must be 2 or 3, got ${String(version)}`);
  const entries = metadataEntries(spec.metadata);
  const tensors = spec.tensors ?? [];
  if (!Array.isArray(tensors)) throw new InvalidArgumentError('tensors must be an array');

  // Alignment: spec.alignment and general.alignment must agree.
  const alignEntry = entries.find(([k]) => k === 'general.alignment')?.[1];
  let metaAlign: number | undefined;
  if (alignEntry !== undefined) {
    if (alignEntry.type !== GgufValueType.UINT32 || !isPowerOfTwoU32(alignEntry.value)) {
      throw new InvalidArgumentError('metadata general.alignment must be a u32 power of two');
    }
    metaAlign = alignEntry.value;
  }
  if (spec.alignment !== undefined && !isPowerOfTwoU32(spec.alignment)) {
    throw new InvalidArgumentError(`alignment must be a power of two up to 2^31, got ${String(spec.alignment)}`);
  }
  if (spec.alignment !== undefined && metaAlign !== undefined && spec.alignment !== metaAlign) {
    throw new InvalidArgumentError(`alignment ${spec.alignment} disagrees with metadata general.alignment ${metaAlign}`);
  }
  const alignment = spec.alignment ?? metaAlign ?? GGUF_DEFAULT_ALIGNMENT;
  if (metaAlign === undefined && alignment !== GGUF_DEFAULT_ALIGNMENT) {
    entries.push(['general.alignment', { type: GgufValueType.UINT32, value: alignment }]);
  }

  const w = new ByteWriter();
  w.bytes(new Uint8Array([0x47, 0x47, 0x55, 0x46]));
  w.u32(version);
  w.u64(tensors.length);
  w.u64(entries.length);

  const keys = new Set<string>();
  for (const [key, entry] of entries) {
    const where = `metadata ${JSON.stringify(key)}`;
    checkString(key, where);
    if (key.includes('\0')) fail(where, 'key contains a NUL character');
    if (encoder.encode(key).length > MAX_KEY_BYTES) fail(where, `key is longer than ${MAX_KEY_BYTES} bytes`);
    if (keys.has(key)) fail(where, 'duplicate key');
    keys.add(key);
    if (typeof entry !== 'object' || entry === null || !isValueType(entry.type)) {
      fail(where, 'entry must be { type: GgufValueType, value }');
    }
    w.string(key);
    w.u32(entry.type);
    writeValue(w, entry.type, entry.value, where);
  }

  const names = new Set<string>();
  const tensorOffsets: number[] = [];
  const tensorByteLengths: number[] = [];
  let offset = 0;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    const where = `tensor ${i}`;
    if (typeof t !== 'object' || t === null) fail(where, 'must be { name, type, dims }');
    const name = checkString(t.name, `${where} name`);
    if (name.includes('\0')) fail(where, 'name contains a NUL character');
    if (encoder.encode(name).length > MAX_TENSOR_NAME_BYTES) {
      fail(where, `name ${JSON.stringify(name)} is longer than ${MAX_TENSOR_NAME_BYTES} bytes`);
    }
    if (names.has(name)) fail(where, `duplicate tensor name ${JSON.stringify(name)}`);
    names.add(name);
    const bytes = tensorByteLength(t.type, t.dims);
    w.string(name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    tensorOffsets.push(offset);
    tensorByteLengths.push(bytes);
    offset += Math.ceil(bytes / alignment) * alignment;
    if (!Number.isSafeInteger(offset)) fail(where, 'data section would pass Number.MAX_SAFE_INTEGER bytes');
  }
  w.reserve((alignment - (w.len % alignment)) % alignment);
  const header = w.buf.slice(0, w.len);
  return { header, alignment, tensorOffsets, tensorByteLengths, dataByteLength: offset, fileSize: header.length + offset };
}

function checkData(spec: GgufSpec, layout: GgufLayout): readonly GgufTensorSpec[] {
  const tensors = spec.tensors ?? [];
  tensors.forEach((t, i) => {
    if (!(t.data instanceof Uint8Array)) throw new InvalidArgumentError(`tensor ${JSON.stringify(t.name)}: data must be a Uint8Array`);
    if (t.data.length !== layout.tensorByteLengths[i]) {
      throw new InvalidArgumentError(
        `tensor ${JSON.stringify(t.name)}: data has ${t.data.length} bytes, but its type and dims need ${layout.tensorByteLengths[i]}`,
      );
    }
  });
  return tensors;
}

/** The complete file in memory. */
export function serializeGguf(spec: GgufSpec): Uint8Array {
  const layout = serializeGgufHeader(spec);
  const tensors = checkData(spec, layout);
  const out = new Uint8Array(layout.fileSize);
  out.set(layout.header, 0);
  tensors.forEach((t, i) => out.set(t.data, layout.header.length + layout.tensorOffsets[i]));
  return out;
}

/** Writes the file tensor by tensor (the whole file is never assembled in memory). */
export async function writeGguf(path: string, spec: GgufSpec): Promise<void> {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('writeGguf expects a file path');
  const layout = serializeGgufHeader(spec);
  const tensors = checkData(spec, layout);
  const fh = await open(path, 'w');
  try {
    await fh.write(layout.header, 0, layout.header.length, 0);
    for (let i = 0; i < tensors.length; i++) {
      const data = tensors[i].data;
      if (data.length > 0) await fh.write(data, 0, data.length, layout.header.length + layout.tensorOffsets[i]);
    }
    // Zero padding after the last tensor (earlier gaps are holes that read as zeros).
    await fh.truncate(layout.fileSize);
  } finally {
    await fh.close();
  }
}

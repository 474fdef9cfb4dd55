/**
 * GGUF reader: header, metadata and tensor table — never the tensor data.
 *
 * One parser (a generator) runs over a byte window. When the window lacks the
 * bytes for the next field, the parser first checks that the file and the
 * header limit could hold them (so a hostile length never drives a large read
 * or allocation) and then yields the count; the driver refills the window and
 * resumes it. `parseGguf` hands over a complete buffer, so the parser never
 * yields; `readGguf` refills from a FileHandle with bounded async reads.
 *
 * This is the gate the native loader trusts: a GgufFile that comes out of it
 * has every tensor aligned, inside the file, non-overlapping, with a known type
 * and a size that fits in a safe integer.
 *
 * Strings must be valid UTF-8 (GgufFormatError otherwise), unless
 * `invalidUtf8: 'replace'` asks for U+FFFD substitution. A leading BOM is kept.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { GgufFormatError, InvalidArgumentError, LmiError, UnsupportedError } from '../errors';
import { ggmlTypeName, isKnownGgmlType, tensorByteLength } from './ggml-types';
import {
  GgmlType,
  GgufArray,
  GgufArrayValue,
  GgufFile,
  GgufMetadata,
  GgufTensorInfo,
  GgufValue,
  GgufValueType,
} from './types';
import { HOST_LITTLE_ENDIAN, isValueType, minElementSize, scalarSize, valueTypeName } from './value-types';

export interface GgufReadOptions {
  /**
   * The header (everything before the tensor data) may not extend past this
   * many bytes. Default 256 MiB — vocabularies of a few hundred thousand tokens
   * take a few tens of MiB. At most 2 GiB.
   */
  maxHeaderBytes?: number;
  /** What to do with a string that is not valid UTF-8. Default 'error' (GgufFormatError). */
  invalidUtf8?: 'error' | 'replace';
  /** readGguf only: bytes per file read (default 1 MiB; larger when one field needs more). */
  readChunkBytes?: number;
}

export const GGUF_DEFAULT_ALIGNMENT = 32;
export const DEFAULT_MAX_HEADER_BYTES = 256 * 1024 * 1024;
/** GGUF spec: keys are at most 65535 bytes. */
export const MAX_KEY_BYTES = 65535;
/** ggml stores tensor names in char[GGML_MAX_NAME = 64], NUL included. */
export const MAX_TENSOR_NAME_BYTES = 63;
/** Arrays nested deeper than this are rejected (real files use depth 1). */
export const MAX_ARRAY_DEPTH = 8;
/** Total nested (inner) arrays per file: each costs far more memory than its 12 bytes on disk. */
export const MAX_NESTED_ARRAYS = 1 << 18;
export const MAX_TENSORS = 1 << 20;
export const MAX_METADATA_ENTRIES = 1 << 20;
/** Smallest possible metadata entry: empty key (8) + type (4) + a 1-byte value. */
const MIN_KV_BYTES = 8 + 4 + 1;
/** Smallest possible tensor-table entry: empty name (8) + n_dims (4) + one dim (8) + type (4) + offset (8). */
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8;
const DEFAULT_READ_CHUNK = 1 << 20;
const TWO_32 = 4294967296;

interface ParseOptions {
  maxHeaderBytes: number;
  fatalUtf8: boolean;
  readChunkBytes: number;
}

function resolveOptions(options: GgufReadOptions | undefined): ParseOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new InvalidArgumentError('GGUF read options must be an object');
  }
  const maxHeaderBytes = options?.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  // Capped at 2 GiB so no count it admits can overflow a JS array or typed array length.
  if (!Number.isSafeInteger(maxHeaderBytes) || maxHeaderBytes < 24 || maxHeaderBytes > 2 ** 31) {
    throw new InvalidArgumentError(`maxHeaderBytes must be an integer from 24 to 2^31, got ${String(maxHeaderBytes)}`);
  }
  const invalidUtf8 = options?.invalidUtf8 ?? 'error';
  if (invalidUtf8 !== 'error' && invalidUtf8 !== 'replace') {
    throw new InvalidArgumentError(`invalidUtf8 must be 'error' or 'replace', got ${String(invalidUtf8)}`);
  }
  const readChunkBytes = options?.readChunkBytes ?? DEFAULT_READ_CHUNK;
  if (!Number.isSafeInteger(readChunkBytes) || readChunkBytes < 1) {
    throw new InvalidArgumentError(`readChunkBytes must be a positive integer, got ${String(readChunkBytes)}`);
  }
  return { maxHeaderBytes, fatalUtf8: invalidUtf8 === 'error', readChunkBytes };
}

/**
 * A window onto the file: `buf[0]` is file byte `base`; bytes up to `end`
 * (absolute) are valid; `pos` is the absolute read position.
 */
class Cursor {
  buf: Uint8Array = new Uint8Array(0);
  view: DataView = new DataView(this.buf.buffer);
  base = 0;
  end = 0;
  pos = 0;
  /** What is being read, for error messages (`metadata entry 3 "key"`, `tensor 5 "name"`). */
  where = 'header';
  nestedArrays = 0;

  constructor(
    readonly fileSize: number,
    /** min(fileSize, maxHeaderBytes): no field may end past it. */
    readonly limit: number,
    readonly maxHeaderBytes: number,
  ) {}

  setWindow(buf: Uint8Array, base: number): void {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.base = base;
    this.end = base + Math.min(buf.length, this.limit - base);
  }

  get avail(): number {
    return this.end - this.pos;
  }

  /** Throws the right error when `n` more bytes at `pos` cannot be had. */
  checkRoom(n: number, what: string): void {
    if (this.pos + n > this.fileSize) {
      throw new GgufFormatError(
        `GGUF file truncated: ${what} (${this.where}) needs ${n} byte${n === 1 ? '' : 's'} at byte ${this.pos}, ` +
          `but the file ends at byte ${this.fileSize}`,
      );
    }
    if (this.pos + n > this.limit) {
      throw new GgufFormatError(
        `GGUF header too large: ${what} (${this.where}) at byte ${this.pos} would end past the ${this.maxHeaderBytes}-byte ` +
          `header limit (raise maxHeaderBytes if the file is trusted)`,
      );
    }
  }

  private at(): number {
    return this.pos - this.base;
  }

  u32(): number {
    const v = this.view.getUint32(this.at(), true);
    this.pos += 4;
    return v;
  }

  /** A u64 as a number: exact below 2^53, approximate (but still huge) above. */
  u64(): number {
    const a = this.at();
    const v = this.view.getUint32(a, true) + this.view.getUint32(a + 4, true) * TWO_32;
    this.pos += 8;
    return v;
  }

  /** The exact u64 that ends at `pos` (for messages about values just read). */
  lastU64(): bigint {
    return this.view.getBigUint64(this.at() - 8, true);
  }

  bytes(n: number): Uint8Array {
    const a = this.at();
    this.pos += n;
    return this.buf.subarray(a, a + n);
  }
}

/** Yields until `n` bytes are in the window (after checking the file could hold them). */
function* need(c: Cursor, n: number, what: string): Generator<number, void, void> {
  if (c.avail >= n) return;
  c.checkRoom(n, what);
  yield n;
  if (c.avail < n) throw new Error(`internal: GGUF reader window holds ${c.avail} bytes, ${n} needed`);
}

function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s);
}

const fatalDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossyDecoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function decodeUtf8(bytes: Uint8Array, fatal: boolean, c: Cursor, what: string): string {
  const n = bytes.length;
  if (n <= 32) {
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (bytes[i] >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  if (!fatal) return lossyDecoder.decode(bytes);
  try {
    return fatalDecoder.decode(bytes);
  } catch (err) {
    throw new GgufFormatError(
      `invalid UTF-8 in ${what} (${c.where}) at byte ${c.pos - n} (use invalidUtf8: 'replace' to accept it lossily)`,
      { cause: err },
    );
  }
}

/** Reads a GGUF string whose byte length may be at most `maxBytes`. */
function* readString(
  c: Cursor,
  what: string,
  maxBytes: number,
  fatal: boolean,
): Generator<number, string, void> {
  if (c.avail < 8) yield* need(c, 8, `${what} length`);
  const len = c.u64();
  if (len > maxBytes) {
    throw new GgufFormatError(
      `${what} (${c.where}) at byte ${c.pos - 8} claims ${c.lastU64()} bytes; the limit is ${maxBytes}`,
    );
  }
  if (c.avail < len) yield* need(c, len, `${what} of ${len} bytes`);
  return decodeUtf8(c.bytes(len), fatal, c, what);
}

function* readScalar(c: Cursor, type: GgufValueType): Generator<number, GgufValue, void> {
  const size = scalarSize(type)!;
  if (c.avail < size) yield* need(c, size, `${valueTypeName(type)} value`);
  const v = c.view;
  const a = c.pos - c.base;
  c.pos += size;
  switch (type) {
    case GgufValueType.UINT8: return v.getUint8(a);
    case GgufValueType.INT8: return v.getInt8(a);
    case GgufValueType.UINT16: return v.getUint16(a, true);
    case GgufValueType.INT16: return v.getInt16(a, true);
    case GgufValueType.UINT32: return v.getUint32(a, true);
    case GgufValueType.INT32: return v.getInt32(a, true);
    case GgufValueType.FLOAT32: return v.getFloat32(a, true);
    case GgufValueType.UINT64: return v.getBigUint64(a, true);
    case GgufValueType.INT64: return v.getBigInt64(a, true);
    case GgufValueType.FLOAT64: return v.getFloat64(a, true);
    case GgufValueType.BOOL: {
      const b = v.getUint8(a);
      if (b > 1) throw new GgufFormatError(`bool value (${c.where}) at byte ${c.pos - 1} is ${b}, not 0 or 1`);
      return b === 1;
    }
    default:
      throw new Error(`internal: ${type} is not a scalar type`);
  }
}

function* readValue(c: Cursor, type: number, opts: ParseOptions): Generator<number, GgufValue, void> {
  if (type === GgufValueType.STRING) return yield* readString(c, 'string value', c.fileSize, opts.fatalUtf8);
  if (type === GgufValueType.ARRAY) return yield* readArray(c, 1, opts);
  if (!isValueType(type)) {
    throw new GgufFormatError(`unknown metadata value type ${type} (${c.where}) at byte ${c.pos - 4}`);
  }
  return yield* readScalar(c, type);
}

/** Copies `count` little-endian numbers into a fresh typed array. */
function numericArray(c: Cursor, type: GgufValueType, count: number): GgufArray {
  const size = scalarSize(type)!;
  const src = c.bytes(count * size);
  let out: GgufArray;
  switch (type) {
    case GgufValueType.UINT8: return Uint8Array.from(src);
    case GgufValueType.INT8: out = new Int8Array(count); break;
    case GgufValueType.UINT16: out = new Uint16Array(count); break;
    case GgufValueType.INT16: out = new Int16Array(count); break;
    case GgufValueType.UINT32: out = new Uint32Array(count); break;
    case GgufValueType.INT32: out = new Int32Array(count); break;
    case GgufValueType.FLOAT32: out = new Float32Array(count); break;
    case GgufValueType.UINT64: out = new BigUint64Array(count); break;
    case GgufValueType.INT64: out = new BigInt64Array(count); break;
    case GgufValueType.FLOAT64: out = new Float64Array(count); break;
    default: throw new Error(`internal: ${type} is not numeric`);
  }
  if (HOST_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(src);
  } else {
    const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
    for (let i = 0; i < count; i++) {
      const o = i * size;
      switch (type) {
        case GgufValueType.INT8: (out as Int8Array)[i] = dv.getInt8(o); break;
        case GgufValueType.UINT16: (out as Uint16Array)[i] = dv.getUint16(o, true); break;
        case GgufValueType.INT16: (out as Int16Array)[i] = dv.getInt16(o, true); break;
        case GgufValueType.UINT32: (out as Uint32Array)[i] = dv.getUint32(o, true); break;
        case GgufValueType.INT32: (out as Int32Array)[i] = dv.getInt32(o, true); break;
        case GgufValueType.FLOAT32: (out as Float32Array)[i] = dv.getFloat32(o, true); break;
        case GgufValueType.UINT64: (out as BigUint64Array)[i] = dv.getBigUint64(o, true); break;
        case GgufValueType.INT64: (out as BigInt64Array)[i] = dv.getBigInt64(o, true); break;
        case GgufValueType.FLOAT64: (out as Float64Array)[i] = dv.getFloat64(o, true); break;
      }
    }
  }
  return out;
}

function* readArray(c: Cursor, depth: number, opts: ParseOptions): Generator<number, GgufArrayValue, void> {
  if (depth > MAX_ARRAY_DEPTH) {
    throw new GgufFormatError(`arrays nested deeper than ${MAX_ARRAY_DEPTH} levels (${c.where}) at byte ${c.pos}`);
  }
  if (c.avail < 12) yield* need(c, 12, 'array element type and length');
  const elementType = c.u32();
  const count = c.u64();
  if (!isValueType(elementType)) {
    throw new GgufFormatError(`unknown array element type ${elementType} (${c.where}) at byte ${c.pos - 12}`);
  }
  // Every element takes at least minElementSize bytes, so the bytes left bound the count.
  const minBytes = count * minElementSize(elementType);
  if (minBytes > c.fileSize - c.pos || minBytes > c.limit - c.pos) {
    const tooBig = minBytes > c.fileSize - c.pos;
    const exactCount = c.lastU64();
    throw new GgufFormatError(
      `array of ${exactCount} ${valueTypeName(elementType)} (${c.where}) at byte ${c.pos - 12} needs at least ` +
        `${exactCount * BigInt(minElementSize(elementType))} bytes, but only ${(tooBig ? c.fileSize : c.limit) - c.pos} ` +
        (tooBig ? 'remain in the file' : 'remain under maxHeaderBytes'),
    );
  }
  const size = scalarSize(elementType);
  let values: GgufArray;
  if (elementType === GgufValueType.STRING) {
    const out: string[] = new Array<string>(count);
    const fatal = opts.fatalUtf8;
    for (let i = 0; i < count; i++) {
      // Fast path: length and bytes already in the window.
      if (c.avail >= 8) {
        const a = c.pos - c.base;
        const lo = c.view.getUint32(a, true);
        const hi = c.view.getUint32(a + 4, true);
        if (hi === 0 && c.avail - 8 >= lo) {
          c.pos += 8;
          out[i] = decodeUtf8(c.bytes(lo), fatal, c, `string ${i} of array`);
          continue;
        }
      }
      out[i] = yield* readString(c, `string ${i} of array`, c.fileSize, fatal);
    }
    values = out;
  } else if (elementType === GgufValueType.ARRAY) {
    c.nestedArrays += count;
    if (c.nestedArrays > MAX_NESTED_ARRAYS) {
      throw new GgufFormatError(`more than ${MAX_NESTED_ARRAYS} nested arrays in the metadata (${c.where})`);
    }
    const out: GgufArrayValue[] = new Array<GgufArrayValue>(count);
    for (let i = 0; i < count; i++) out[i] = yield* readArray(c, depth + 1, opts);
    values = out;
  } else if (elementType === GgufValueType.BOOL) {
    if (c.avail < count) yield* need(c, count, `array of ${count} bool`);
    const src = c.bytes(count);
    const out: boolean[] = new Array<boolean>(count);
    for (let i = 0; i < count; i++) {
      const b = src[i];
      if (b > 1) throw new GgufFormatError(`bool ${i} of array (${c.where}) is ${b}, not 0 or 1`);
      out[i] = b === 1;
    }
    values = out;
  } else {
    const bytes = count * size!;
    if (c.avail < bytes) yield* need(c, bytes, `array of ${count} ${valueTypeName(elementType)}`);
    values = numericArray(c, elementType, count);
  }
  return { elementType, values };
}

function checkCounts(c: Cursor, nTensors: number, nKv: number): void {
  const exactTensors = c.view.getBigUint64(c.pos - c.base - 16, true);
  const exactKv = c.lastU64();
  if (nTensors > MAX_TENSORS) {
    throw new GgufFormatError(`GGUF header claims ${exactTensors} tensors; at most ${MAX_TENSORS} are accepted`);
  }
  if (nKv > MAX_METADATA_ENTRIES) {
    throw new GgufFormatError(`GGUF header claims ${exactKv} metadata entries; at most ${MAX_METADATA_ENTRIES} are accepted`);
  }
  const minBytes = nTensors * MIN_TENSOR_INFO_BYTES + nKv * MIN_KV_BYTES;
  const room = c.limit - c.pos;
  if (minBytes > room) {
    throw new GgufFormatError(
      `GGUF header claims ${nTensors} tensors and ${nKv} metadata entries, which need at least ${minBytes} bytes, ` +
        `but only ${room} ${c.limit === c.fileSize ? 'remain in the file (truncated, or corrupt counts)' : 'remain under maxHeaderBytes'}`,
    );
  }
}

function* parse(c: Cursor, opts: ParseOptions): Generator<number, GgufFile, void> {
  // --- fixed header: magic, version, counts
  c.where = 'header';
  if (c.avail < 4) yield* need(c, 4, 'magic');
  const magic = c.bytes(4);
  if (magic[0] !== 0x47 || magic[1] !== 0x47 || magic[2] !== 0x55 || magic[3] !== 0x46) {
    const hex = Array.from(magic, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const text = Array.from(magic, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    throw new GgufFormatError(`not a GGUF file: magic is ${hex} ("${text}"), expected 47 47 55 46 ("GGUF")`);
  }
  if (c.avail < 4) yield* need(c, 4, 'version');
  const version = c.u32();
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24 | (version & 0xff00) << 8 | (version >>> 8) & 0xff00 | version >>> 24) >>> 0;
    if (swapped >= 1 && swapped <= 3) {
      throw new UnsupportedError(`big-endian GGUF (version ${swapped}) is not supported; use a little-endian conversion`);
    }
    if (version === 1) {
      throw new UnsupportedError(
        'GGUF version 1 (the 2023 legacy format) is not supported; only versions 2 and 3 are. ' +
          'Convert the model again with a current llama.cpp.',
      );
    }
    throw new UnsupportedError(`GGUF version ${version} is not supported; only versions 2 and 3 are`);
  }
  if (c.avail < 16) yield* need(c, 16, 'tensor and metadata counts');
  const nTensors = c.u64();
  const nKv = c.u64();
  checkCounts(c, nTensors, nKv);

  // --- metadata
  const metadata: GgufMetadata = new Map();
  for (let i = 0; i < nKv; i++) {
    c.where = `metadata entry ${i}`;
    const key = yield* readString(c, 'metadata key', MAX_KEY_BYTES, true);
    c.where = `metadata entry ${i} ${quote(key)}`;
    if (key.includes('\0')) throw new GgufFormatError(`metadata key ${quote(key)} contains a NUL byte`);
    if (metadata.has(key)) throw new GgufFormatError(`duplicate metadata key ${quote(key)} (entry ${i})`);
    if (c.avail < 4) yield* need(c, 4, 'value type');
    const type = c.u32();
    const value = yield* readValue(c, type, opts);
    metadata.set(key, { type: type as GgufValueType, value });
  }

  const alignment = readAlignment(metadata);

  // --- tensor table
  const tensors: GgufTensorInfo[] = new Array<GgufTensorInfo>(nTensors);
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    c.where = `tensor ${i}`;
    const nameStart = c.pos;
    const name = yield* readString(c, 'tensor name', MAX_TENSOR_NAME_BYTES, true);
    c.where = `tensor ${i} ${quote(name)}`;
    if (name.includes('\0')) throw new GgufFormatError(`tensor name ${quote(name)} at byte ${nameStart} contains a NUL byte`);
    if (names.has(name)) throw new GgufFormatError(`duplicate tensor name ${quote(name)} (tensor ${i})`);
    names.add(name);

    if (c.avail < 4) yield* need(c, 4, 'n_dims');
    const nDims = c.u32();
    if (nDims < 1 || nDims > 4) {
      throw new GgufFormatError(`tensor ${quote(name)} has ${nDims} dimensions; GGUF tensors have 1 to 4`);
    }
    if (c.avail < 8 * nDims + 12) yield* need(c, 8 * nDims + 12, 'dims, type and offset');
    const dims: number[] = new Array<number>(nDims);
    for (let d = 0; d < nDims; d++) {
      const v = c.u64();
      if (v > Number.MAX_SAFE_INTEGER) {
        throw new GgufFormatError(`tensor ${quote(name)} dim ${d} is ${c.lastU64()}, beyond 2^53`);
      }
      dims[d] = v;
    }
    const type = c.u32();
    if (!isKnownGgmlType(type)) {
      throw new UnsupportedError(`tensor ${quote(name)} has unknown ggml type ${type}`);
    }
    const relativeOffset = c.u64();
    if (relativeOffset > Number.MAX_SAFE_INTEGER) {
      throw new GgufFormatError(`tensor ${quote(name)} offset ${c.lastU64()} is beyond 2^53`);
    }
    if (relativeOffset % alignment !== 0) {
      throw new GgufFormatError(
        `tensor ${quote(name)} offset ${relativeOffset} is not a multiple of the alignment ${alignment}`,
      );
    }
    let byteLength: number;
    try {
      byteLength = tensorByteLength(type as GgmlType, dims);
    } catch (err) {
      if (!(err instanceof LmiError)) throw err;
      throw new GgufFormatError(`tensor ${quote(name)} (${ggmlTypeName(type)} [${dims.join(', ')}]): ${err.message}`, {
        cause: err,
      });
    }
    tensors[i] = { name, dims, type: type as GgmlType, relativeOffset, offset: 0, byteLength };
  }

  // --- data section placement
  const headerByteLength = c.pos;
  const dataOffset = Math.ceil(headerByteLength / alignment) * alignment;
  const room = c.fileSize - dataOffset;
  for (const t of tensors) {
    if (room < 0 || t.relativeOffset > room || t.byteLength > room - t.relativeOffset) {
      throw new GgufFormatError(
        `tensor ${quote(t.name)} data [${dataOffset} + ${t.relativeOffset}, +${t.byteLength} bytes) ` +
          `lies outside the file (${c.fileSize} bytes)`,
      );
    }
    t.offset = dataOffset + t.relativeOffset;
  }
  checkOverlaps(tensors);

  return { version, metadata, tensors, alignment, dataOffset, headerByteLength, fileSize: c.fileSize };
}

function readAlignment(metadata: GgufMetadata): number {
  const entry = metadata.get('general.alignment');
  if (entry === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (entry.type !== GgufValueType.UINT32) {
    throw new GgufFormatError(`general.alignment must be a u32, found ${valueTypeName(entry.type)}`);
  }
  const a = entry.value as number;
  if (a === 0 || (a & (a - 1)) !== 0) {
    throw new GgufFormatError(`general.alignment is ${a}, which is not a power of two`);
  }
  return a;
}

function checkOverlaps(tensors: GgufTensorInfo[]): void {
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    const cur = sorted[i];
    if (cur.offset < prev.offset + prev.byteLength) {
      throw new GgufFormatError(
        `tensors ${quote(prev.name)} [${prev.offset}, ${prev.offset + prev.byteLength}) and ` +
          `${quote(cur.name)} [${cur.offset}, ${cur.offset + cur.byteLength}) overlap`,
      );
    }
  }
}

/** Parses the header, metadata and tensor table of an in-memory GGUF file. */
export function parseGguf(bytes: Uint8Array, options?: GgufReadOptions): GgufFile {
  if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError('parseGguf expects a Uint8Array');
  const opts = resolveOptions(options);
  const c = new Cursor(bytes.length, Math.min(bytes.length, opts.maxHeaderBytes), opts.maxHeaderBytes);
  c.setWindow(bytes, 0);
  const step = parse(c, opts).next();
  // The whole buffer is in the window, so the parser either finishes or throws.
  if (!step.done) throw new Error('internal: GGUF parser asked for more bytes than a complete buffer holds');
  return step.value;
}

/**
 * Reads the header, metadata and tensor table of a GGUF file with bounded
 * async reads (about `readChunkBytes` at a time; the tensor data is never read).
 */
export async function readGguf(path: string, options?: GgufReadOptions): Promise<GgufFile> {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('readGguf expects a file path');
  const opts = resolveOptions(options);
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new InvalidArgumentError(`cannot open GGUF file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const stat = await fh.stat();
    if (!stat.isFile()) throw new InvalidArgumentError(`${JSON.stringify(path)} is not a regular file`);
    const fileSize = stat.size;
    const c = new Cursor(fileSize, Math.min(fileSize, opts.maxHeaderBytes), opts.maxHeaderBytes);
    const gen = parse(c, opts);
    for (let step = gen.next(); ; step = gen.next()) {
      if (step.done) return step.value;
      const n = step.value;
      // Keep the unread tail of the window, then read ahead from where it ends.
      const size = Math.min(c.limit - c.pos, Math.max(n, opts.readChunkBytes));
      const buf = new Uint8Array(size);
      const keep = c.end - c.pos;
      buf.set(c.buf.subarray(c.pos - c.base, c.end - c.base));
      let filled = keep;
      while (filled < size) {
        const { bytesRead } = await fh.read(buf, filled, size - filled, c.pos + filled);
        if (bytesRead === 0) {
          throw new GgufFormatError(`GGUF file ${JSON.stringify(path)} ended at byte ${c.pos + filled} while being read (was it truncated meanwhile?)`);
        }
        filled += bytesRead;
      }
      c.setWindow(buf, c.pos);
    }
  } finally {
    await fh.close();
  }
}

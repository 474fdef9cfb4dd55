/**
 * Test helpers: locating the shared fixtures, a raw little-endian byte builder
 * (independent of lib/gguf/writer, for hand-made and hostile files), and an
 * independent walker that maps where each field of a known-good GGUF lies.
 */
import { readFileSync } from 'node:fs';

import { fixturePath } from '../helpers/fixtures';

export { fixturePath, fixturesDir } from '../helpers/fixtures';

export function readFixture(rel: string): Uint8Array {
  const b = readFileSync(fixturePath(rel));
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export const STORIES = 'stories260K/stories260K.gguf';
export const PASSKEY = 'passkey/passkey-tiny.gguf';
export const V1_FILE = 'stories260K/tinyllamas-stories-260k-f32.gguf';
export const VOCAB_FILES = [
  'bert-bge', 'deepseek-coder', 'deepseek-llm', 'falcon', 'gpt-2', 'gpt-neox',
  'llama-spm', 'mpt', 'phi-3', 'refact', 'starcoder',
].map((n) => `llama.cpp-vocab/ggml-vocab-${n}.gguf`);

/** Little-endian byte builder for hand-made files. */
export class Raw {
  private parts: number[] = [];
  get length(): number { return this.parts.length; }
  u8(v: number): this { this.parts.push(v & 0xff); return this; }
  u32(v: number): this {
    for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff);
    return this;
  }
  u64(v: number | bigint): this {
    let b = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 8; i++) { this.parts.push(Number(b & 0xffn)); b >>= 8n; }
    return this;
  }
  bytes(b: ArrayLike<number>): this { for (let i = 0; i < b.length; i++) this.parts.push(b[i]); return this; }
  /** GGUF string: u64 length + bytes (UTF-8 of a JS string, or raw bytes). */
  str(s: string | ArrayLike<number>): this {
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    return this.u64(b.length).bytes(b);
  }
  pad(alignment: number): this { while (this.parts.length % alignment) this.parts.push(0); return this; }
  zeros(n: number): this { for (let i = 0; i < n; i++) this.parts.push(0); return this; }
  header(version: number, nTensors: number | bigint, nKv: number | bigint): this {
    return this.bytes([0x47, 0x47, 0x55, 0x46]).u32(version).u64(nTensors).u64(nKv);
  }
  /** A metadata entry: key, type, then the raw value bytes written by `value`. */
  kv(key: string, type: number, value: (r: this) => void): this { this.str(key).u32(type); value(this); return this; }
  tensor(name: string, dims: number[], type: number, offset: number | bigint): this {
    this.str(name).u32(dims.length);
    for (const d of dims) this.u64(d);
    return this.u32(type).u64(offset);
  }
  build(): Uint8Array { return Uint8Array.from(this.parts); }
}

export type FieldKind =
  | 'n_tensors' | 'n_kv' | 'key_len' | 'value_type' | 'array_type' | 'array_len' | 'string_len' | 'scalar'
  | 'name_len' | 'n_dims' | 'dim' | 'tensor_type' | 'tensor_offset';

export interface Field { kind: FieldKind; offset: number; size: number }

/** Maps every field of a well-formed little-endian GGUF v2/v3 (throws on anything odd). */
export function mapFields(bytes: Uint8Array): { fields: Field[]; headerEnd: number } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [];
  let p = 8;
  const mark = (kind: FieldKind, size: number) => { fields.push({ kind, offset: p, size }); p += size; };
  const u32 = () => dv.getUint32(p, true);
  const u64 = () => Number(dv.getBigUint64(p, true));
  const sizes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const str = (kind: FieldKind) => { const n = u64(); mark(kind, 8); p += n; };
  const value = (type: number): void => {
    if (type === 8) str('string_len');
    else if (type === 9) {
      const et = u32(); mark('array_type', 4);
      const n = u64(); mark('array_len', 8);
      if (et === 8) for (let i = 0; i < n; i++) str('string_len');
      else if (et === 9) for (let i = 0; i < n; i++) value(9);
      else { fields.push({ kind: 'scalar', offset: p, size: n * sizes[et] }); p += n * sizes[et]; }
    } else if (type in sizes) mark('scalar', sizes[type]);
    else throw new Error(`mapFields: unknown type ${type}`);
  };
  const nT = u64(); mark('n_tensors', 8);
  const nKv = u64(); mark('n_kv', 8);
  for (let i = 0; i < nKv; i++) {
    str('key_len');
    const t = u32(); mark('value_type', 4);
    value(t);
  }
  for (let i = 0; i < nT; i++) {
    str('name_len');
    const nd = u32(); mark('n_dims', 4);
    for (let d = 0; d < nd; d++) mark('dim', 8);
    mark('tensor_type', 4);
    mark('tensor_offset', 8);
  }
  return { fields, headerEnd: p };
}

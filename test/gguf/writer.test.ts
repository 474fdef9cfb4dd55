import { mkdtemp, readFile, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import {
  GgmlType,
  GgufValueType as T,
  arrayOf,
  ggufValue as v,
  parseGguf,
  readGguf,
  serializeGguf,
  serializeGgufHeader,
  tensorByteLength,
  writeGguf,
  type GgufFile,
  type GgufMetadata,
  type GgufSpec,
  type GgufTensorSpec,
} from '../../lib/gguf';
import { PASSKEY, STORIES, VOCAB_FILES, readFixture } from './helpers';

/** Deterministic bytes (xorshift32). */
function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}

function everyType(): GgufMetadata {
  return new Map([
    ['u8', v.u8(255)], ['i8', v.i8(-128)], ['u16', v.u16(65535)], ['i16', v.i16(-32768)],
    ['u32', v.u32(4294967295)], ['i32', v.i32(-2147483648)], ['f32', v.f32(Math.fround(0.1))],
    ['f32.nan', v.f32(NaN)], ['f32.inf', v.f32(-Infinity)], ['f32.negzero', v.f32(-0)],
    ['f64', v.f64(Math.PI)], ['bool.t', v.bool(true)], ['bool.f', v.bool(false)],
    ['u64.max', v.u64(2n ** 64n - 1n)], ['i64.min', v.i64(-(2n ** 63n))], ['i64.max', v.i64(2n ** 63n - 1n)],
    ['str', v.string('héllo ✓ \u{1F600} \0 nul')], ['str.empty', v.string('')],
    ['', v.string('empty key')],
    ['a.strings', v.strings(['', 'a', '<unk>', '\uFEFF'])], ['a.empty', v.strings([])],
    ['a.bools', v.bools([true, false, true])], ['a.u8', v.u8s([0, 255])], ['a.i8', v.i8s([-1, 1])],
    ['a.u16', v.u16s([65535])], ['a.i16', v.i16s([-2])], ['a.u32', v.u32s([1, 2, 3])],
    ['a.i32', v.i32s([-5])], ['a.f32', v.f32s([1.5, -2.25])], ['a.f64', v.f64s([1e300])],
    ['a.u64', v.u64s([0n, 2n ** 64n - 1n])], ['a.i64', v.i64s([-(2n ** 63n), 7n])],
    ['a.empty.f32', v.f32s([])],
    ['a.nested', v.array(arrayOf.arrays([
      arrayOf.u8s([1, 2]),
      arrayOf.strings(['x', 'y']),
      arrayOf.arrays([arrayOf.i64s([5n]), arrayOf.arrays([])]),
      arrayOf.bools([]),
    ]))],
  ]);
}

function tensorSet(): GgufTensorSpec[] {
  const mk = (name: string, type: GgmlType, dims: number[], seed: number): GgufTensorSpec =>
    ({ name, type, dims, data: noise(tensorByteLength(type, dims), seed) });
  return [
    mk('f32', GgmlType.F32, [3, 5], 1),
    mk('q4_0', GgmlType.Q4_0, [64, 3], 2),
    mk('q8_0', GgmlType.Q8_0, [32], 3),
    mk('empty', GgmlType.F16, [0, 4], 4),
    mk('q6_k', GgmlType.Q6_K, [256, 1, 1, 2], 5),
    mk('i32', GgmlType.I32, [7], 6),
    mk('bf16', GgmlType.BF16, [9, 1], 7),
  ];
}

function expectRoundTrip(spec: GgufSpec, g: GgufFile, bytes: Uint8Array): void {
  const meta = spec.metadata instanceof Map ? spec.metadata : new Map(Object.entries(spec.metadata ?? {}));
  const expected = new Map(meta);
  if (!expected.has('general.alignment') && spec.alignment !== undefined && spec.alignment !== 32) {
    expected.set('general.alignment', v.u32(spec.alignment));
  }
  expect(g.metadata).toEqual(expected);
  expect([...g.metadata.keys()]).toEqual([...expected.keys()]);
  expect(g.version).toBe(spec.version ?? 3);
  const tensors = spec.tensors ?? [];
  expect(g.tensors.length).toBe(tensors.length);
  tensors.forEach((t, i) => {
    const info = g.tensors[i];
    expect([info.name, info.type, info.dims]).toEqual([t.name, t.type, [...t.dims]]);
    expect(info.offset % g.alignment).toBe(0);
    expect(bytes.subarray(info.offset, info.offset + info.byteLength)).toEqual(t.data);
  });
  expect(bytes.length % g.alignment).toBe(0);
}

describe('serializeGguf round trips', () => {
  test.each([
    [2, undefined], [3, undefined], [3, 1], [3, 64], [2, 4096],
  ] as const)('every value type and tensor kind, v%s, alignment %s', (version, alignment) => {
    const spec: GgufSpec = { version, alignment, metadata: everyType(), tensors: tensorSet() };
    const bytes = serializeGguf(spec);
    const g = parseGguf(bytes);
    expect(g.alignment).toBe(alignment ?? 32);
    expectRoundTrip(spec, g, bytes);
    // and again: serialize(parse(x)) is byte-identical
    const again = serializeGguf({
      version: g.version,
      metadata: g.metadata,
      tensors: g.tensors.map((t) => ({ ...t, data: bytes.subarray(t.offset, t.offset + t.byteLength) })),
    });
    expect(again).toEqual(bytes);
  });

  test('an empty file and a record for metadata', () => {
    const bytes = serializeGguf({ metadata: {} });
    expect(bytes.length).toBe(32);
    expect(parseGguf(bytes)).toMatchObject({ version: 3, tensors: [], headerByteLength: 24, dataOffset: 32 });
    const rec = serializeGguf({ metadata: { 'general.architecture': v.string('llama'), 'x.y': v.u32(1) } });
    expect([...parseGguf(rec).metadata.keys()]).toEqual(['general.architecture', 'x.y']);
  });

  test('general.alignment in the metadata sets the alignment', () => {
    const bytes = serializeGguf({ metadata: new Map([['general.alignment', v.u32(128)]]), tensors: tensorSet() });
    const g = parseGguf(bytes);
    expect(g.alignment).toBe(128);
    expect(g.metadata.size).toBe(1);
    expect(serializeGgufHeader({ alignment: 32 }).header.length).toBe(32);
  });

  test('writeGguf writes what serializeGguf returns', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lmi-gguf-'));
    try {
      const spec: GgufSpec = { metadata: everyType(), tensors: tensorSet(), alignment: 64 };
      const p = path.join(dir, 'w.gguf');
      await writeGguf(p, spec);
      const onDisk = new Uint8Array(await readFile(p));
      const bytes = serializeGguf(spec);
      expect(onDisk).toEqual(bytes);
      expect(await readGguf(p)).toEqual(parseGguf(bytes));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('re-serializing the fixtures', () => {
  function reserialize(bytes: Uint8Array): Uint8Array {
    const g = parseGguf(bytes);
    return serializeGguf({
      version: g.version,
      metadata: g.metadata,
      tensors: g.tensors.map((t) => ({ name: t.name, type: t.type, dims: t.dims, data: bytes.subarray(t.offset, t.offset + t.byteLength) })),
    });
  }

  test.each([STORIES, PASSKEY])('%s is reproduced byte for byte', (rel) => {
    const bytes = readFixture(rel);
    const out = reserialize(bytes);
    expect(parseGguf(out)).toEqual(parseGguf(bytes));
    expect(Buffer.compare(out, bytes)).toBe(0);
  });

  test('a vocab-only file parses identically (only the header padding differs)', () => {
    const bytes = readFixture(VOCAB_FILES[6]);
    const out = reserialize(bytes);
    const a = parseGguf(bytes);
    const b = parseGguf(out);
    expect(b.metadata).toEqual(a.metadata);
    expect(b.headerByteLength).toBe(a.headerByteLength);
    expect(Buffer.compare(out.subarray(0, a.headerByteLength), bytes)).toBe(0);
    expect(out.length).toBe(a.dataOffset);
  });
});

describe('writer validation', () => {
  const t = (over: Partial<GgufTensorSpec>): GgufSpec => ({
    tensors: [{ name: 'w', type: GgmlType.F32, dims: [4], data: new Uint8Array(16), ...over }],
  });
  const bad = (spec: GgufSpec, re: RegExp) => {
    expect(() => serializeGguf(spec)).toThrow(InvalidArgumentError);
    expect(() => serializeGguf(spec)).toThrow(re);
  };

  test('tensor data, names, dims, types', () => {
    bad(t({ data: new Uint8Array(15) }), /data has 15 bytes, but its type and dims need 16/);
    bad(t({ data: [0] as unknown as Uint8Array }), /must be a Uint8Array/);
    bad(t({ name: 'x'.repeat(64) }), /longer than 63 bytes/);
    bad(t({ name: 'a\0' }), /NUL/);
    bad(t({ dims: [1, 1, 1, 1, 1] }), /1 to 4/);
    bad(t({ type: GgmlType.Q4_0, dims: [16] }), /not a multiple/);
    expect(() => serializeGguf(t({ type: 4 as GgmlType }))).toThrow(UnsupportedError);
    const dup = t({});
    bad({ tensors: [...dup.tensors!, ...dup.tensors!] }, /duplicate tensor name "w"/);
  });

  test('values out of range or of the wrong kind', () => {
    const m = (entry: unknown): GgufSpec => ({ metadata: new Map([['k', entry as never]]) });
    bad(m({ type: T.UINT8, value: 256 }), /metadata "k": u8 must be an integer in \[0, 255\], got 256/);
    bad(m({ type: T.INT32, value: 1.5 }), /i32 must be an integer/);
    bad(m({ type: T.UINT64, value: -1n }), /u64 must be a bigint/);
    bad(m({ type: T.INT64, value: 2n ** 63n }), /i64/);
    bad(m({ type: T.BOOL, value: 1 }), /bool must be a boolean/);
    bad(m({ type: T.FLOAT32, value: '1' }), /f32 must be a number/);
    bad(m({ type: T.STRING, value: 'a\uD800b' }), /lone UTF-16 surrogate/);
    bad(m({ type: 13, value: 1 }), /GgufValueType/);
    bad(m({ type: T.ARRAY, value: { elementType: T.BOOL, values: new Uint8Array(1) } }), /bool array given as a typed array/);
    bad(m({ type: T.ARRAY, value: { elementType: T.UINT8, values: [1, 300] } }), /metadata "k"\[1\]: u8 must be/);
    bad(m({ type: T.ARRAY, value: { elementType: 42, values: [] } }), /unknown array element type 42/);
    let deep = arrayOf.u8s([]);
    for (let i = 0; i < 8; i++) deep = arrayOf.arrays([deep]);
    bad(m(v.array(deep)), /nested deeper than 8/);
    // u64 also accepts safe integer numbers
    expect(parseGguf(serializeGguf(m({ type: T.UINT64, value: 5 }))).metadata.get('k')!.value).toBe(5n);
  });

  test('keys, version and alignment', () => {
    bad({ metadata: new Map([['a\0', v.u8(1)]]) }, /NUL/);
    bad({ metadata: new Map([['k'.repeat(65536), v.u8(1)]]) }, /longer than 65535 bytes/);
    bad({ version: 1 as 3 }, /version must be 2 or 3/);
    bad({ alignment: 48 }, /power of two/);
    bad({ alignment: 64, metadata: new Map([['general.alignment', v.u32(32)]]) }, /disagrees/);
    bad({ metadata: new Map([['general.alignment', v.u64(32)]]) }, /u32 power of two/);
  });
});

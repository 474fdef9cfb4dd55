/** One test (at least) per validation rule of the reader, on hand-made files. */
import { GgufFormatError, InvalidArgumentError, LmiError, UnsupportedError } from '../../lib/errors';
import {
  GgmlType,
  GgufValueType as T,
  MAX_ARRAY_DEPTH,
  MAX_NESTED_ARRAYS,
  parseGguf,
  readGguf,
  type GgufFile,
} from '../../lib/gguf';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Raw } from './helpers';

const F32 = GgmlType.F32;

/** A file with one u32 entry and one F32 [4] tensor, padded and with data. */
function small(version = 3): Uint8Array {
  return new Raw()
    .header(version, 1, 1)
    .kv('a.b', T.UINT32, (r) => r.u32(7))
    .tensor('w', [4], F32, 0)
    .pad(32)
    .zeros(16)
    .build();
}

function formatError(bytes: Uint8Array, re: RegExp): void {
  let err: unknown;
  try {
    parseGguf(bytes);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(GgufFormatError);
  expect((err as Error).message).toMatch(re);
}

function unsupported(bytes: Uint8Array, re: RegExp): void {
  expect(() => parseGguf(bytes)).toThrow(UnsupportedError);
  expect(() => parseGguf(bytes)).toThrow(re);
}

describe('header', () => {
  test('a small valid file, v2 and v3', () => {
    for (const v of [2, 3]) {
      const g = parseGguf(small(v));
      expect(g.version).toBe(v);
      expect(g.metadata.get('a.b')).toEqual({ type: T.UINT32, value: 7 });
      expect(g.tensors).toEqual([{ name: 'w', dims: [4], type: F32, relativeOffset: 0, offset: 96, byteLength: 16 }]);
      expect(g.headerByteLength).toBe(24 + 8 + 3 + 4 + 4 + 8 + 1 + 4 + 8 + 4 + 8);
      expect(g.dataOffset).toBe(96);
    }
  });

  test('bad magic', () => {
    formatError(new Uint8Array([0x67, 0x67, 0x6a, 0x74, 1, 0, 0, 0]), /not a GGUF file: magic is 67 67 6a 74 \("ggjt"\)/);
    formatError(new Raw().bytes([0, 0, 0, 0]).zeros(20).build(), /not a GGUF file/);
  });

  test('empty and tiny inputs are truncated, naming the byte', () => {
    formatError(new Uint8Array(0), /truncated: magic .* needs 4 bytes at byte 0, but the file ends at byte 0/);
    formatError(new Uint8Array([0x47, 0x47, 0x55]), /truncated/);
    formatError(new Raw().bytes([0x47, 0x47, 0x55, 0x46]).u32(3).u64(0).build(), /counts .* at byte 8/);
  });

  test('every prefix of a valid file fails cleanly', () => {
    const full = small();
    const g = parseGguf(full);
    for (let n = 0; n < full.length; n++) {
      const cut = full.subarray(0, n);
      let err: unknown;
      try {
        parseGguf(cut);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GgufFormatError);
      const msg = (err as Error).message;
      if (n < g.headerByteLength) expect(msg).toMatch(/truncated: .* at byte \d+, but the file ends at byte \d+|only \d+ remain in the file \(truncated/);
      else expect(msg).toMatch(/lies outside the file/);
    }
  });

  test('versions other than 2 and 3', () => {
    unsupported(new Raw().header(1, 0, 0).build(), /GGUF version 1 /);
    unsupported(new Raw().header(4, 0, 0).build(), /GGUF version 4 is not supported; only versions 2 and 3/);
    unsupported(new Raw().header(0, 0, 0).build(), /version 0/);
    const be = new Raw().bytes([0x47, 0x47, 0x55, 0x46, 0, 0, 0, 3]).zeros(16).build();
    unsupported(be, /big-endian GGUF \(version 3\)/);
  });

  test('absurd counts are refused before any allocation', () => {
    formatError(new Raw().header(3, 0, 2 ** 40).build(), /claims 1099511627776 metadata entries/);
    formatError(new Raw().header(3, 2n ** 63n, 0).build(), /claims 9223372036854775808 tensors/);
    formatError(new Raw().header(3, 0, 2n ** 64n - 1n).build(), /18446744073709551615/);
    // counts within the caps but more than the bytes could hold
    formatError(new Raw().header(3, 1000, 0).zeros(100).build(), /1000 tensors and 0 metadata entries, which need at least 32000 bytes, but only 100 remain/);
    formatError(new Raw().header(3, 0, 10).zeros(129).build(), /need at least 130 bytes/);
  });
});

describe('metadata', () => {
  const one = (write: (r: Raw) => void, nKv = 1) => {
    const r = new Raw().header(3, 0, nKv);
    write(r);
    return r.build();
  };

  test('every scalar type', () => {
    const g = parseGguf(one((r) => {
      r.kv('u8', T.UINT8, (x) => x.u8(255)).kv('i8', T.INT8, (x) => x.u8(0x80))
        .kv('u16', T.UINT16, (x) => x.u8(0xff).u8(0xff)).kv('i16', T.INT16, (x) => x.u8(0).u8(0x80))
        .kv('u32', T.UINT32, (x) => x.u32(0xffffffff)).kv('i32', T.INT32, (x) => x.u32(0x80000000))
        .kv('f32', T.FLOAT32, (x) => x.u32(0x3fc00000)).kv('bool', T.BOOL, (x) => x.u8(1))
        .kv('str', T.STRING, (x) => x.str('hé')).kv('u64', T.UINT64, (x) => x.u64(2n ** 64n - 1n))
        .kv('i64', T.INT64, (x) => x.u64(2n ** 63n)).kv('f64', T.FLOAT64, (x) => x.u64(0x3ff8000000000000n));
    }, 12));
    const v = (k: string) => g.metadata.get(k)!.value;
    expect([v('u8'), v('i8'), v('u16'), v('i16'), v('u32'), v('i32'), v('f32'), v('bool'), v('str')])
      .toEqual([255, -128, 65535, -32768, 4294967295, -2147483648, 1.5, true, 'hé']);
    expect([v('u64'), v('i64'), v('f64')]).toEqual([2n ** 64n - 1n, -(2n ** 63n), 1.5]);
  });

  test('key string length: hostile, past the file, over the key limit', () => {
    formatError(one((r) => r.u64(2n ** 62n).zeros(20)), /metadata key .* claims 4611686018427387904 bytes; the limit is 65535/);
    formatError(one((r) => r.u64(100).zeros(20)), /truncated: metadata key of 100 bytes \(metadata entry 0\)/);
    formatError(one((r) => r.u64(70000).zeros(70010)), /claims 70000 bytes; the limit is 65535/);
  });

  test('string value length: hostile, or past the file', () => {
    formatError(one((r) => r.str('k').u32(T.STRING).u64(2n ** 62n)), /string value \(metadata entry 0 "k"\) .* claims 4611686018427387904 bytes/);
    formatError(one((r) => r.str('k').u32(T.STRING).u64(10).zeros(3)), /truncated: string value of 10 bytes/);
  });

  test('unknown value types and array element types', () => {
    formatError(one((r) => r.str('k').u32(13).u64(0)), /unknown metadata value type 13 \(metadata entry 0 "k"\)/);
    formatError(one((r) => r.str('k').u32(0xffffffff).u64(0)), /unknown metadata value type 4294967295/);
    formatError(one((r) => r.str('k').u32(T.ARRAY).u32(77).u64(0)), /unknown array element type 77/);
  });

  test('bools must be 0 or 1', () => {
    formatError(one((r) => r.kv('k', T.BOOL, (x) => x.u8(2))), /bool value .* is 2, not 0 or 1/);
    formatError(one((r) => r.kv('k', T.ARRAY, (x) => x.u32(T.BOOL).u64(3).bytes([0, 1, 9]))), /bool 2 of array .* is 9/);
  });

  test('array counts are bounded by the bytes left', () => {
    formatError(one((r) => r.kv('k', T.ARRAY, (x) => x.u32(T.UINT8).u64(2n ** 62n))), /array of 4611686018427387904 u8 .* needs at least 4611686018427387904 bytes, but only 0 remain/);
    formatError(one((r) => r.kv('k', T.ARRAY, (x) => x.u32(T.STRING).u64(5).zeros(39))), /array of 5 string .* needs at least 40 bytes/);
    formatError(one((r) => r.kv('k', T.ARRAY, (x) => x.u32(T.ARRAY).u64(2n ** 40n).zeros(100))), /array of 1099511627776 array/);
    formatError(one((r) => r.kv('k', T.ARRAY, (x) => x.u32(T.FLOAT64).u64(3).zeros(23))), /needs at least 24 bytes/);
  });

  test('arrays of every element type, empty arrays and nested arrays', () => {
    const g = parseGguf(one((r) => {
      r.kv('e', T.ARRAY, (x) => x.u32(T.STRING).u64(0))
        .kv('s', T.ARRAY, (x) => x.u32(T.STRING).u64(2).str('').str('ab'))
        .kv('i16', T.ARRAY, (x) => x.u32(T.INT16).u64(2).bytes([1, 0, 0xff, 0xff]))
        .kv('u64', T.ARRAY, (x) => x.u32(T.UINT64).u64(1).u64(2n ** 64n - 2n))
        .kv('n', T.ARRAY, (x) => x.u32(T.ARRAY).u64(2)
          .u32(T.UINT8).u64(2).bytes([1, 2])
          .u32(T.ARRAY).u64(1).u32(T.STRING).u64(1).str('x'));
    }, 5));
    const v = (k: string) => g.metadata.get(k)!.value;
    expect(v('e')).toEqual({ elementType: T.STRING, values: [] });
    expect(v('s')).toEqual({ elementType: T.STRING, values: ['', 'ab'] });
    expect(v('i16')).toEqual({ elementType: T.INT16, values: new Int16Array([1, -1]) });
    expect(v('u64')).toEqual({ elementType: T.UINT64, values: new BigUint64Array([2n ** 64n - 2n]) });
    expect(v('n')).toEqual({
      elementType: T.ARRAY,
      values: [
        { elementType: T.UINT8, values: new Uint8Array([1, 2]) },
        { elementType: T.ARRAY, values: [{ elementType: T.STRING, values: ['x'] }] },
      ],
    });
  });

  test('nesting depth is capped', () => {
    const nest = (depth: number) => one((r) => {
      r.str('k').u32(T.ARRAY);
      for (let i = 1; i < depth; i++) r.u32(T.ARRAY).u64(1);
      r.u32(T.UINT8).u64(0);
    });
    expect(() => parseGguf(nest(MAX_ARRAY_DEPTH))).not.toThrow();
    formatError(nest(MAX_ARRAY_DEPTH + 1), /nested deeper than 8 levels/);
  });

  test('the total number of nested arrays is capped', () => {
    const n = MAX_NESTED_ARRAYS + 1;
    const r = new Raw().header(3, 0, 1).kv('k', T.ARRAY, (x) => x.u32(T.ARRAY).u64(n));
    for (let i = 0; i < n; i++) r.u32(T.UINT8).u64(0);
    formatError(r.build(), /more than 262144 nested arrays/);
  });

  test('duplicate keys and NUL bytes in keys', () => {
    formatError(one((r) => r.kv('k', T.UINT8, (x) => x.u8(1)).kv('k', T.UINT8, (x) => x.u8(2)), 2), /duplicate metadata key "k" \(entry 1\)/);
    formatError(one((r) => r.kv('a\0b', T.UINT8, (x) => x.u8(1))), /contains a NUL byte/);
  });

  test('invalid UTF-8: rejected by default, replaced on request; BOM kept', () => {
    const bad = one((r) => r.kv('k', T.STRING, (x) => x.str([0x61, 0xff, 0x62])));
    formatError(bad, /invalid UTF-8 in string value \(metadata entry 0 "k"\) at byte \d+ \(use invalidUtf8: 'replace'/);
    expect(parseGguf(bad, { invalidUtf8: 'replace' }).metadata.get('k')!.value).toBe('a\uFFFDb');
    const inArray = one((r) => r.kv('k', T.ARRAY, (x) => x.u32(T.STRING).u64(2).str('ok').str([0xc3])));
    formatError(inArray, /invalid UTF-8 in string 1 of array/);
    expect(parseGguf(inArray, { invalidUtf8: 'replace' }).metadata.get('k')!.value).toEqual({ elementType: T.STRING, values: ['ok', '\uFFFD'] });
    // keys must be valid UTF-8 whatever the option says
    const badKey = one((r) => r.str([0x80]).u32(T.UINT8).u8(0));
    expect(() => parseGguf(badKey, { invalidUtf8: 'replace' })).toThrow(/invalid UTF-8 in metadata key/);
    const bom = one((r) => r.kv('k', T.STRING, (x) => x.str('\uFEFFx')));
    expect(parseGguf(bom).metadata.get('k')!.value).toBe('\uFEFFx');
    const long = 'é'.repeat(40) + '\u{1F600}';
    expect(parseGguf(one((r) => r.kv('k', T.STRING, (x) => x.str(long)))).metadata.get('k')!.value).toBe(long);
  });
});

describe('alignment', () => {
  const withAlign = (write: (r: Raw) => void, tensorOffset = 0) => {
    const r = new Raw().header(3, 1, 1);
    r.str('general.alignment');
    write(r);
    return r.tensor('w', [4], F32, tensorOffset);
  };

  test('general.alignment is honoured', () => {
    const g = parseGguf(withAlign((r) => r.u32(T.UINT32).u32(64)).pad(64).zeros(64).build());
    expect(g.alignment).toBe(64);
    expect(g.dataOffset % 64).toBe(0);
    expect(g.dataOffset).toBeGreaterThanOrEqual(g.headerByteLength);
    const one = parseGguf(withAlign((r) => r.u32(T.UINT32).u32(1)).zeros(16).build());
    expect(one.dataOffset).toBe(one.headerByteLength);
  });

  test('it must be a u32 power of two', () => {
    formatError(withAlign((r) => r.u32(T.UINT32).u32(0)).build(), /general.alignment is 0, which is not a power of two/);
    formatError(withAlign((r) => r.u32(T.UINT32).u32(48)).build(), /48, which is not a power of two/);
    formatError(withAlign((r) => r.u32(T.UINT64).u64(32)).build(), /general.alignment must be a u32, found u64/);
    formatError(withAlign((r) => r.u32(T.STRING).str('32')).build(), /must be a u32, found string/);
  });

  test('tensor offsets must be multiples of it', () => {
    formatError(withAlign((r) => r.u32(T.UINT32).u32(32), 16).pad(32).zeros(64).build(), /tensor "w" offset 16 is not a multiple of the alignment 32/);
  });
});

describe('tensor table', () => {
  const tensors = (write: (r: Raw) => void, n: number, data = 64) => {
    const r = new Raw().header(3, n, 0);
    write(r);
    return r.pad(32).zeros(data).build();
  };

  test('names: length, NUL, duplicates, UTF-8', () => {
    expect(parseGguf(tensors((r) => r.tensor('x'.repeat(63), [4], F32, 0), 1)).tensors[0].name).toHaveLength(63);
    formatError(tensors((r) => r.tensor('x'.repeat(64), [4], F32, 0), 1), /tensor name \(tensor 0\) .* claims 64 bytes; the limit is 63/);
    formatError(tensors((r) => r.u64(2n ** 62n), 1), /tensor name .* claims 4611686018427387904 bytes/);
    formatError(tensors((r) => r.tensor('a\0', [4], F32, 0), 1), /contains a NUL byte/);
    formatError(tensors((r) => r.tensor('a', [4], F32, 0).tensor('a', [4], F32, 32), 2), /duplicate tensor name "a" \(tensor 1\)/);
    formatError(tensors((r) => r.str([0xfe]).u32(1).u64(4).u32(F32).u64(0), 1), /invalid UTF-8 in tensor name/);
  });

  test('n_dims must be 1 to 4', () => {
    formatError(tensors((r) => r.tensor('a', [], F32, 0), 1), /tensor "a" has 0 dimensions; GGUF tensors have 1 to 4/);
    formatError(tensors((r) => r.tensor('a', [1, 1, 1, 1, 1], F32, 0), 1), /has 5 dimensions/);
    formatError(tensors((r) => r.str('a').u32(0xffffffff), 1), /has 4294967295 dimensions/);
    expect(parseGguf(tensors((r) => r.tensor('a', [1, 2, 1, 2], F32, 0), 1)).tensors[0].dims).toEqual([1, 2, 1, 2]);
  });

  test('dims: beyond 2^53, unsafe products, zero sizes', () => {
    formatError(tensors((r) => r.str('a').u32(1).u64(2n ** 53n).u32(F32).u64(0), 1), /dim 0 is 9007199254740992, beyond 2\^53/);
    formatError(tensors((r) => r.str('a').u32(1).u64(2n ** 64n - 1n).u32(F32).u64(0), 1), /18446744073709551615/);
    formatError(tensors((r) => r.tensor('a', [2 ** 30, 2 ** 30], F32, 0), 1), /tensor "a" \(F32 \[1073741824, 1073741824\]\): .*2\^53 elements/);
    formatError(tensors((r) => r.tensor('a', [2 ** 26, 2 ** 26], F32, 0), 1), /larger than Number.MAX_SAFE_INTEGER bytes/);
    formatError(tensors((r) => r.tensor('a', [2 ** 40, 2 ** 40, 0], F32, 0), 1), /2\^53 elements/);
    const z = parseGguf(tensors((r) => r.tensor('a', [0, 5], F32, 0).tensor('b', [4], F32, 0), 2));
    expect(z.tensors.map((t) => t.byteLength)).toEqual([0, 16]);
  });

  test('types: unknown numbers are UnsupportedError naming the number', () => {
    for (const t of [4, 5, 31, 36, 42, 1000, 0xffffffff]) {
      unsupported(tensors((r) => r.tensor('a', [32], t, 0), 1), new RegExp(`tensor "a" has unknown ggml type ${t}$`));
    }
    formatError(tensors((r) => r.tensor('a', [33], GgmlType.Q4_0, 0), 1), /row length 33 is not a multiple of the Q4_0 block size 32/);
    const q = parseGguf(tensors((r) => r.tensor('q', [256, 2], GgmlType.Q4_K, 0), 1, 288));
    expect(q.tensors[0].byteLength).toBe(288);
  });

  test('offsets: huge, unaligned, outside the file', () => {
    formatError(tensors((r) => r.tensor('a', [4], F32, 2n ** 63n), 1), /offset 9223372036854775808 is beyond 2\^53/);
    formatError(tensors((r) => r.tensor('a', [4], F32, 8), 1), /offset 8 is not a multiple of the alignment 32/);
    formatError(tensors((r) => r.tensor('a', [4], F32, 64), 1, 79), /tensor "a" data \[\d+ \+ 64, \+16 bytes\) lies outside the file/);
    expect(() => parseGguf(tensors((r) => r.tensor('a', [4], F32, 64), 1, 80))).not.toThrow();
    formatError(tensors((r) => r.tensor('a', [4], F32, 2 ** 52), 1), /lies outside the file/);
    // data section itself past the end (no padding written)
    formatError(new Raw().header(3, 1, 0).tensor('a', [0], F32, 0).build(), /lies outside the file/);
  });

  test('overlapping tensors', () => {
    formatError(tensors((r) => r.tensor('a', [16], F32, 0).tensor('b', [4], F32, 32), 2), /tensors "a" \[\d+, \d+\) and "b" \[\d+, \d+\) overlap/);
    formatError(tensors((r) => r.tensor('a', [4], F32, 32).tensor('b', [4], F32, 32), 2), /overlap/);
    // order in the table does not matter; touching is fine; empty tensors overlap nothing
    const ok = parseGguf(tensors((r) => r.tensor('b', [8], F32, 32).tensor('a', [8], F32, 0).tensor('c', [0], F32, 32), 3));
    expect(ok.tensors.map((t) => t.relativeOffset)).toEqual([32, 0, 32]);
  });

  test('trailing bytes after the data are allowed', () => {
    expect(parseGguf(new Raw().bytes(small()).zeros(100).build()).tensors).toHaveLength(1);
  });
});

describe('limits and options', () => {
  const vocab = (n: number) => {
    const r = new Raw().header(3, 0, 1).kv('t', T.ARRAY, (x) => x.u32(T.STRING).u64(n));
    for (let i = 0; i < n; i++) r.str(`tok${i}`);
    return r.build();
  };

  test('maxHeaderBytes', async () => {
    const bytes = vocab(1000);
    expect(() => parseGguf(bytes, { maxHeaderBytes: bytes.length })).not.toThrow();
    let err: unknown;
    try { parseGguf(bytes, { maxHeaderBytes: 9000 }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(GgufFormatError);
    expect((err as Error).message).toMatch(/header too large: .* past the 9000-byte header limit \(raise maxHeaderBytes/);
    // a count the limit cannot hold is refused up front
    expect(() => parseGguf(bytes, { maxHeaderBytes: 4096 })).toThrow(/needs at least 8000 bytes, but only 4047 remain under maxHeaderBytes/);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lmi-gguf-'));
    try {
      const p = path.join(dir, 'v.gguf');
      await writeFile(p, bytes);
      await expect(readGguf(p, { maxHeaderBytes: 9000, readChunkBytes: 100 })).rejects.toThrow(/header too large/);
      expect(await readGguf(p, { readChunkBytes: 3 })).toEqual(parseGguf(bytes));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('bad arguments are InvalidArgumentError', () => {
    expect(() => parseGguf([1, 2, 3] as unknown as Uint8Array)).toThrow(InvalidArgumentError);
    expect(() => parseGguf(small(), { maxHeaderBytes: -1 })).toThrow(InvalidArgumentError);
    expect(() => parseGguf(small(), { invalidUtf8: 'ignore' as 'error' })).toThrow(InvalidArgumentError);
    expect(() => parseGguf(small(), { readChunkBytes: 0 })).toThrow(InvalidArgumentError);
  });

  test('every reader error is an LmiError with a stable code', () => {
    const cases: Array<[Uint8Array, string]> = [
      [new Uint8Array(3), 'GGUF_FORMAT'],
      [new Raw().header(1, 0, 0).build(), 'UNSUPPORTED'],
    ];
    for (const [bytes, code] of cases) {
      let err: unknown;
      try { parseGguf(bytes); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(LmiError);
      expect((err as LmiError).code).toBe(code);
    }
  });

  test('a result is a plain GgufFile', () => {
    const g: GgufFile = parseGguf(small());
    expect(Object.keys(g).sort()).toEqual(['alignment', 'dataOffset', 'fileSize', 'headerByteLength', 'metadata', 'tensors', 'version']);
  });
});

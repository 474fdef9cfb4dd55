import { mkdtemp, open, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { GgufFormatError, InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import {
  GgmlType,
  GgufValueType,
  getArray,
  getBool,
  getInteger,
  getNumber,
  getNumberArray,
  getString,
  getStringArray,
  parseGguf,
  readGguf,
  requireBool,
  requireNumber,
  requireString,
  requireStringArray,
  serializeGgufHeader,
  tensorByteLength,
} from '../../lib/gguf';
import { PASSKEY, STORIES, V1_FILE, VOCAB_FILES, fixturePath, mapFields, readFixture } from './helpers';

describe('stories260K.gguf', () => {
  const bytes = readFixture(STORIES);
  const g = parseGguf(bytes);
  const meta = g.metadata;

  test('header and known metadata', () => {
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.fileSize).toBe(1185568);
    expect(requireString(meta, 'general.architecture')).toBe('llama');
    expect(requireString(meta, 'general.name')).toBe('stories260K');
    expect(requireNumber(meta, 'llama.context_length')).toBe(512);
    expect(requireNumber(meta, 'llama.embedding_length')).toBe(64);
    expect(requireNumber(meta, 'llama.block_count')).toBe(5);
    expect(requireNumber(meta, 'llama.feed_forward_length')).toBe(172);
    expect(requireNumber(meta, 'llama.attention.head_count')).toBe(8);
    expect(requireNumber(meta, 'llama.attention.head_count_kv')).toBe(4);
    expect(requireNumber(meta, 'llama.rope.freq_base')).toBe(10000);
    expect(requireNumber(meta, 'llama.attention.layer_norm_rms_epsilon')).toBe(Math.fround(1e-5));
    expect(requireString(meta, 'tokenizer.ggml.model')).toBe('llama');
    expect(requireBool(meta, 'tokenizer.ggml.add_bos_token')).toBe(true);
    expect(getBool(meta, 'tokenizer.ggml.add_eos_token')).toBe(false);
    const tokens = requireStringArray(meta, 'tokenizer.ggml.tokens');
    expect(tokens.length).toBe(512);
    expect(tokens.slice(0, 3)).toEqual(['<unk>', '<s>', '</s>']);
    expect(tokens[3]).toBe('<0x00>');
    const scores = getNumberArray(meta, 'tokenizer.ggml.scores')!;
    expect(scores).toBeInstanceOf(Float32Array);
    expect(scores.length).toBe(512);
    const types = getNumberArray(meta, 'tokenizer.ggml.token_type')!;
    expect(Array.from(types.slice(0, 4))).toEqual([2, 3, 3, 6]);
  });

  test('tensor table', () => {
    expect(g.tensors.length).toBe(48);
    const emb = g.tensors.find((t) => t.name === 'token_embd.weight')!;
    expect(emb.dims).toEqual([64, 512]);
    expect(emb.type).toBe(GgmlType.F32);
    expect(emb.byteLength).toBe(64 * 512 * 4);
    expect(g.tensors.find((t) => t.name === 'output.weight')!.dims).toEqual([64, 512]);
    expect(g.tensors.find((t) => t.name === 'blk.0.attn_k.weight')!.dims).toEqual([64, 32]);
    for (const t of g.tensors) {
      expect(t.type).toBe(GgmlType.F32);
      expect(t.byteLength).toBe(tensorByteLength(t.type, t.dims));
      expect(t.offset).toBe(g.dataOffset + t.relativeOffset);
    }
  });

  test('tensors are contiguous and padded up to the end of the file', () => {
    const sorted = [...g.tensors].sort((a, b) => a.offset - b.offset);
    let expected = g.dataOffset;
    for (const t of sorted) {
      expect(t.offset).toBe(expected);
      expected = Math.ceil((t.offset + t.byteLength) / 32) * 32;
    }
    expect(expected).toBe(bytes.length);
    expect(g.dataOffset % 32).toBe(0);
    expect(g.dataOffset - g.headerByteLength).toBeLessThan(32);
  });

  test('tensor table agrees with an independent field walk', () => {
    const { fields, headerEnd } = mapFields(bytes);
    expect(headerEnd).toBe(g.headerByteLength);
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    const offsets = fields.filter((f) => f.kind === 'tensor_offset').map((f) => Number(dv.getBigUint64(f.offset, true)));
    expect(offsets).toEqual(g.tensors.map((t) => t.relativeOffset));
  });

  test('token_embd.weight data read at its offset is finite and plausible', () => {
    const emb = g.tensors.find((t) => t.name === 'token_embd.weight')!;
    const dv = new DataView(bytes.buffer, bytes.byteOffset + emb.offset, emb.byteLength);
    let sumSq = 0;
    let nonFinite = 0;
    for (let i = 0; i < 64 * 512; i++) {
      const v = dv.getFloat32(i * 4, true);
      if (!Number.isFinite(v)) nonFinite++;
      sumSq += v * v;
    }
    expect(nonFinite).toBe(0);
    const rms = Math.sqrt(sumSq / (64 * 512));
    expect(rms).toBeGreaterThan(1e-3);
    expect(rms).toBeLessThan(10);
    // the norm weights of a trained model sit around 1, not 0
    const norm = g.tensors.find((t) => t.name === 'output_norm.weight')!;
    const first = new DataView(bytes.buffer, bytes.byteOffset + norm.offset).getFloat32(0, true);
    expect(Math.abs(first)).toBeGreaterThan(0.05);
  });

  test('readGguf gives the same result, with any read chunk size', async () => {
    const p = fixturePath(STORIES);
    expect(await readGguf(p)).toEqual(g);
    for (const readChunkBytes of [1, 7, 4096]) expect(await readGguf(p, { readChunkBytes })).toEqual(g);
  });

  test('a Buffer view at a non-zero offset parses the same', () => {
    const big = Buffer.alloc(bytes.length + 3);
    big.set(bytes, 3);
    expect(parseGguf(big.subarray(3))).toEqual(g);
  });
});

describe('passkey-tiny.gguf', () => {
  test('metadata and tensors', async () => {
    const g = await readGguf(fixturePath(PASSKEY));
    expect(g).toEqual(parseGguf(readFixture(PASSKEY)));
    expect(g.version).toBe(3);
    expect(getString(g.metadata, 'general.name')).toBe('passkey-tiny');
    expect(getNumber(g.metadata, 'llama.context_length')).toBe(256);
    expect(getNumber(g.metadata, 'llama.block_count')).toBe(4);
    expect(getStringArray(g.metadata, 'tokenizer.ggml.tokens')!.length).toBe(512);
    expect(g.tensors.length).toBe(39); // 4 layers * 9 + token_embd + output_norm + output
    for (const t of g.tensors) {
      expect(t.type).toBe(GgmlType.F32);
      expect(t.offset + t.byteLength).toBeLessThanOrEqual(g.fileSize);
    }
  });
});

describe('llama.cpp vocab-only files', () => {
  test.each(VOCAB_FILES)('%s', async (rel) => {
    const bytes = readFixture(rel);
    const g = parseGguf(bytes);
    expect(g.version).toBe(3);
    expect(g.tensors).toEqual([]);
    expect(g.headerByteLength).toBe(bytes.length);
    const model = getString(g.metadata, 'tokenizer.ggml.model');
    expect(['llama', 'gpt2', 'bert']).toContain(model);
    const tokens = getStringArray(g.metadata, 'tokenizer.ggml.tokens')!;
    expect(tokens.length).toBeGreaterThan(1000);
    expect(getArray(g.metadata, 'tokenizer.ggml.token_type')!.values.length).toBe(tokens.length);
    expect(await readGguf(fixturePath(rel), { readChunkBytes: 65536 })).toEqual(g);
  });
});

describe('GGUF v1', () => {
  test('is refused with UnsupportedError naming the version', async () => {
    expect(() => parseGguf(readFixture(V1_FILE))).toThrow(UnsupportedError);
    expect(() => parseGguf(readFixture(V1_FILE))).toThrow(/version 1\b/);
    await expect(readGguf(fixturePath(V1_FILE))).rejects.toThrow(UnsupportedError);
  });
});

describe('metadata accessors', () => {
  const meta = parseGguf(readFixture(STORIES)).metadata;
  test('absent keys give undefined; require* throw naming the key', () => {
    expect(getString(meta, 'nope')).toBeUndefined();
    expect(getNumber(meta, 'nope')).toBeUndefined();
    expect(getBool(meta, 'nope')).toBeUndefined();
    expect(getArray(meta, 'nope')).toBeUndefined();
    expect(() => requireNumber(meta, 'llama.nope')).toThrow(GgufFormatError);
    expect(() => requireNumber(meta, 'llama.nope')).toThrow(/"llama.nope" is missing/);
  });
  test('type mismatches throw GgufFormatError naming the key', () => {
    expect(() => getString(meta, 'llama.context_length')).toThrow(/"llama.context_length" should be a string, but it is u32/);
    expect(() => getNumber(meta, 'general.name')).toThrow(GgufFormatError);
    expect(() => getBool(meta, 'general.name')).toThrow(GgufFormatError);
    expect(() => getArray(meta, 'general.name')).toThrow(GgufFormatError);
    expect(() => getStringArray(meta, 'tokenizer.ggml.scores')).toThrow(/should be an array of strings, but it is array of f32/);
    expect(() => getNumberArray(meta, 'tokenizer.ggml.tokens')).toThrow(GgufFormatError);
    expect(() => getInteger(meta, 'llama.attention.layer_norm_rms_epsilon')).toThrow(/should be an integer/);
    expect(getInteger(meta, 'llama.block_count')).toBe(5);
  });
  test('64-bit values convert only when safe', () => {
    const m = new Map([
      ['a', { type: GgufValueType.UINT64, value: 2n ** 53n - 1n }],
      ['b', { type: GgufValueType.INT64, value: -(2n ** 60n) }],
      ['c', { type: GgufValueType.ARRAY, value: { elementType: GgufValueType.UINT64, values: new BigUint64Array([1n, 2n]) } }],
      ['d', { type: GgufValueType.ARRAY, value: { elementType: GgufValueType.INT64, values: new BigInt64Array([1n, 2n ** 62n]) } }],
    ]);
    expect(getNumber(m, 'a')).toBe(2 ** 53 - 1);
    expect(() => getNumber(m, 'b')).toThrow(/"b" holds -1152921504606846976/);
    expect(getNumberArray(m, 'c')).toEqual(new Float64Array([1, 2]));
    expect(() => getNumberArray(m, 'd')).toThrow(GgufFormatError);
  });
});

describe('readGguf on files', () => {
  let dir: string;
  beforeAll(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'lmi-gguf-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  test('missing file and directory give InvalidArgumentError', async () => {
    await expect(readGguf(path.join(dir, 'absent.gguf'))).rejects.toThrow(InvalidArgumentError);
    await expect(readGguf(dir)).rejects.toThrow(/not a regular file/);
    await expect(readGguf('')).rejects.toThrow(InvalidArgumentError);
  });

  test('an 8 GiB sparse file: only the header is read', async () => {
    const { header, tensorOffsets } = serializeGgufHeader({
      tensors: [
        { name: 'small', type: GgmlType.F32, dims: [8] },
        { name: 'huge', type: GgmlType.F32, dims: [1024, 1024, 1024, 2] },
      ],
    });
    const file = path.join(dir, 'sparse.gguf');
    const fh = await open(file, 'w');
    try {
      await fh.write(header, 0, header.length, 0);
      await fh.truncate(header.length + tensorOffsets[1] + 8 * 2 ** 30);
    } finally {
      await fh.close();
    }
    const before = process.memoryUsage();
    const t0 = Date.now();
    const g = await readGguf(file);
    expect(Date.now() - t0).toBeLessThan(2000);
    const after = process.memoryUsage();
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(64 * 2 ** 20);
    expect(g.tensors[1].byteLength).toBe(8 * 2 ** 30);
    expect(g.tensors[1].offset + g.tensors[1].byteLength).toBe(g.fileSize);
  });
});

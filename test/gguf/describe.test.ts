import { InvalidArgumentError } from '../../lib/errors';
import { GgmlType, arrayOf, describeGguf, ggufValue as v, parseGguf, serializeGguf } from '../../lib/gguf';
import { STORIES, VOCAB_FILES, readFixture } from './helpers';

describe('describeGguf text', () => {
  const g = parseGguf(readFixture(STORIES));
  const text = describeGguf(g);

  test('summary, metadata, tensors and totals of stories260K', () => {
    const lines = text.split('\n');
    expect(lines[0]).toBe('GGUF v3, 1,185,568 bytes, alignment 32, header 14,342 bytes, tensor data at 14,368');
    expect(text).toContain('Metadata (24 entries):');
    expect(text).toMatch(/\n {2}llama\.context_length +u32 +512\n/);
    expect(text).toMatch(/\n {2}llama\.attention\.layer_norm_rms_epsilon +f32 +0\.00001\n/);
    expect(text).toMatch(/tokenizer\.ggml\.tokens +string\[\] +\[512 strings: "<unk>", "<s>", "<\/s>", \.\.\. \]\n/);
    expect(text).toContain('Tensors (48):');
    expect(text).toMatch(/\n {2}token_embd\.weight +F32 +\[64, 512\] +14,368 +131,072\n/);
    expect(lines.filter((l) => /^ {2}blk\.\d+\./.test(l))).toHaveLength(45);
    expect(text).toContain('Total: 48 tensors, 292,800 elements, 1,171,200 bytes of tensor data; F32: 48 (1,171,200 bytes)');
    expect(describeGguf(g)).toBe(text);
  });

  test('maxArrayItems and long strings', () => {
    expect(describeGguf(g, { maxArrayItems: 1 })).toContain('[512 strings: "<unk>", ... ]');
    expect(describeGguf(g, { maxArrayItems: 0 })).toContain('[512 strings: ... ]');
    const vocab = describeGguf(parseGguf(readFixture(VOCAB_FILES[8])));
    expect(vocab).toMatch(/tokenizer\.chat_template +string +"\{\{ bos_token \}\}.*"\.\.\. \(269 chars\)\n/);
    expect(vocab).toContain('Tensors (0):');
    expect(vocab.split('\n')[0]).not.toContain('tensor data at');
    expect(() => describeGguf({} as never)).toThrow(InvalidArgumentError);
  });

  test('a small synthetic file, pinned', () => {
    const bytes = serializeGguf({
      metadata: new Map([
        ['general.architecture', v.string('llama')],
        ['x.big', v.u64(2n ** 64n - 1n)],
        ['x.f', v.f32(NaN)],
        ['x.nested', v.array(arrayOf.arrays([arrayOf.u8s([1, 2]), arrayOf.strings([])]))],
        ['x.text', v.string('two\nlines')],
      ]),
      tensors: [
        { name: 'a', type: GgmlType.Q8_0, dims: [32, 2], data: new Uint8Array(68) },
        { name: 'b', type: GgmlType.F16, dims: [3], data: new Uint8Array(6) },
      ],
    });
    // 24 fixed + 182 metadata + 74 tensor table = 280; data at 288; a padded to 96 bytes, b to 32
    expect(describeGguf(parseGguf(bytes))).toBe(
      [
        'GGUF v3, 416 bytes, alignment 32, header 280 bytes, tensor data at 288',
        '',
        'Metadata (5 entries):',
        '  general.architecture  string    "llama"',
        '  x.big                 u64       18446744073709551615',
        '  x.f                   f32       NaN',
        '  x.nested              array[]   [2 arrays: [2 u8: 1, 2], [0 strings]]',
        '  x.text                string    "two\\nlines"',
        '',
        'Tensors (2):',
        '  name  type  shape    offset  bytes',
        '  a     Q8_0  [32, 2]     288     68',
        '  b     F16   [3]         384      6',
        '',
        'Total: 2 tensors, 67 elements, 74 bytes of tensor data; Q8_0: 1 (68 bytes), F16: 1 (6 bytes)',
        '',
      ].join('\n'),
    );
  });
});

describe('describeGguf JSON', () => {
  const g = parseGguf(readFixture(STORIES));
  const json = describeGguf(g, { json: true });
  const o = JSON.parse(json);

  test('stable shape', () => {
    expect(Object.keys(o)).toEqual(['format', 'version', 'fileSize', 'alignment', 'headerByteLength', 'dataOffset', 'metadata', 'tensors', 'totals']);
    expect(o).toMatchObject({ format: 'gguf', version: 3, fileSize: 1185568, alignment: 32, dataOffset: 14368 });
    expect(o.metadata['llama.context_length']).toEqual({ type: 'u32', value: 512 });
    expect(o.metadata['llama.attention.layer_norm_rms_epsilon']).toEqual({ type: 'f32', value: 0.00001 });
    expect(o.metadata['tokenizer.ggml.tokens']).toEqual({
      type: 'array', elementType: 'string', length: 512,
      values: ['<unk>', '<s>', '</s>', '<0x00>', '<0x01>', '<0x02>', '<0x03>', '<0x04>'], truncated: true,
    });
    expect(o.tensors[0]).toEqual({
      name: 'token_embd.weight', type: 'F32', typeId: 0, shape: [64, 512], offset: 14368, relativeOffset: 0, byteLength: 131072, elements: 32768,
    });
    expect(o.tensors).toHaveLength(48);
    expect(o.totals).toEqual({ tensors: 48, elements: 292800, bytes: 1171200, byType: { F32: { count: 48, bytes: 1171200 } } });
    expect(describeGguf(g, { json: true })).toBe(json);
    const all = JSON.parse(describeGguf(g, { json: true, maxArrayItems: Infinity }));
    expect(all.metadata['tokenizer.ggml.tokens'].values).toHaveLength(512);
    expect(all.metadata['tokenizer.ggml.tokens'].truncated).toBe(false);
  });

  test('64-bit ints are strings, non-finite floats are strings, nested arrays nest', () => {
    const bytes = serializeGguf({
      metadata: new Map([
        ['b', v.i64(-(2n ** 63n))], ['n', v.f64(-Infinity)], ['f', v.f32s([NaN, 0.5])],
        ['a', v.array(arrayOf.arrays([arrayOf.u64s([1n])]))],
      ]),
    });
    const m = JSON.parse(describeGguf(parseGguf(bytes), { json: true })).metadata;
    expect(m.b).toEqual({ type: 'i64', value: '-9223372036854775808' });
    expect(m.n).toEqual({ type: 'f64', value: '-Infinity' });
    expect(m.f.values).toEqual(['NaN', 0.5]);
    expect(m.a).toEqual({
      type: 'array', elementType: 'array', length: 1, truncated: false,
      values: [{ elementType: 'u64', length: 1, values: ['1'], truncated: false }],
    });
  });
});

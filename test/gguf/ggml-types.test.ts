import { InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import {
  GGML_TYPES,
  ggmlTypeInfo,
  ggmlTypeName,
  isKnownGgmlType,
  tensorByteLength,
  tensorElementCount,
} from '../../lib/gguf/ggml-types';
import { GgmlType } from '../../lib/gguf/types';

// [elements per block, bytes per block], written out independently of the table in lib/.
const EXPECTED: Record<string, [number, number]> = {
  F32: [1, 4], F16: [1, 2], BF16: [1, 2], F64: [1, 8],
  I8: [1, 1], I16: [1, 2], I32: [1, 4], I64: [1, 8],
  Q4_0: [32, 18], Q4_1: [32, 20], Q5_0: [32, 22], Q5_1: [32, 24], Q8_0: [32, 34], Q8_1: [32, 36],
  Q2_K: [256, 84], Q3_K: [256, 110], Q4_K: [256, 144], Q5_K: [256, 176], Q6_K: [256, 210], Q8_K: [256, 292],
  IQ2_XXS: [256, 66], IQ2_XS: [256, 74], IQ2_S: [256, 82], IQ3_XXS: [256, 98], IQ3_S: [256, 110],
  IQ1_S: [256, 50], IQ1_M: [256, 56], IQ4_NL: [32, 18], IQ4_XS: [256, 136],
  TQ1_0: [256, 54], TQ2_0: [256, 66], MXFP4: [32, 17], NVFP4: [64, 36], Q1_0: [128, 18],
};

describe('ggml type table', () => {
  test('every GgmlType enum member has the expected block facts', () => {
    const enumNames = Object.keys(GgmlType).filter((k) => Number.isNaN(Number(k)));
    expect(enumNames.sort()).toEqual(Object.keys(EXPECTED).sort());
    for (const name of enumNames) {
      const type = GgmlType[name as keyof typeof GgmlType];
      const info = ggmlTypeInfo(type);
      expect([name, info.blockSize, info.bytesPerBlock]).toEqual([name, ...EXPECTED[name]]);
      expect(info.name).toBe(name);
      expect(info.ggmlName.toLowerCase()).toBe(name.toLowerCase());
      expect(info.quantized).toBe(EXPECTED[name][0] > 1);
    }
    expect(GGML_TYPES.length).toBe(enumNames.length);
  });

  test('numbers that name no type are unknown', () => {
    for (const t of [4, 5, 31, 32, 33, 36, 37, 38, 42, -1, 1.5, 2 ** 32]) {
      expect(isKnownGgmlType(t)).toBe(false);
      expect(() => ggmlTypeInfo(t)).toThrow(UnsupportedError);
      expect(ggmlTypeName(t)).toBe(`type(${t})`);
    }
    expect(() => ggmlTypeInfo(99)).toThrow(/unknown ggml tensor type 99/);
    expect(ggmlTypeName(GgmlType.Q4_K)).toBe('Q4_K');
  });
});

describe('tensorByteLength', () => {
  test('sizes by type and shape', () => {
    expect(tensorByteLength(GgmlType.F32, [64, 512])).toBe(64 * 512 * 4);
    expect(tensorByteLength(GgmlType.F16, [3])).toBe(6);
    expect(tensorByteLength(GgmlType.Q4_0, [64, 3])).toBe(2 * 18 * 3);
    expect(tensorByteLength(GgmlType.Q6_K, [512, 2, 3, 4])).toBe(2 * 210 * 24);
    expect(tensorByteLength(GgmlType.Q8_0, [0, 7])).toBe(0);
    expect(tensorByteLength(GgmlType.F32, [5, 0])).toBe(0);
  });

  test('row length must be a multiple of the block size', () => {
    expect(() => tensorByteLength(GgmlType.Q4_0, [33])).toThrow(InvalidArgumentError);
    expect(() => tensorByteLength(GgmlType.Q4_K, [128, 2])).toThrow(/not a multiple of the Q4_K block size 256/);
  });

  test('bad dims', () => {
    for (const dims of [[], [1, 2, 3, 4, 5], [-1], [1.5], [NaN], [2 ** 53], ['3' as unknown as number]]) {
      expect(() => tensorByteLength(GgmlType.F32, dims)).toThrow(InvalidArgumentError);
    }
  });

  test('sizes beyond 2^53 are rejected, never rounded', () => {
    expect(tensorByteLength(GgmlType.I8, [2 ** 26, 2 ** 26])).toBe(2 ** 52);
    expect(() => tensorByteLength(GgmlType.F32, [2 ** 26, 2 ** 26])).toThrow(/MAX_SAFE_INTEGER/);
    expect(() => tensorByteLength(GgmlType.F32, [2 ** 20, 2 ** 20, 2 ** 20])).toThrow(InvalidArgumentError);
    // A zero dim does not excuse an element count that overflows int64 consumers.
    expect(() => tensorByteLength(GgmlType.F32, [2 ** 40, 2 ** 40, 0])).toThrow(/2\^53 elements/);
    expect(() => tensorByteLength(99 as GgmlType, [1])).toThrow(UnsupportedError);
  });

  test('tensorElementCount', () => {
    expect(tensorElementCount([4, 5, 6])).toBe(120);
    expect(tensorElementCount([4, 0])).toBe(0);
    expect(() => tensorElementCount([2 ** 30, 2 ** 30])).toThrow(InvalidArgumentError);
  });
});

/**
 * Pre-tokenizer splitting, model-free.
 *
 * Llama 3 ('llama-bpe') and Qwen2 vocabularies are not among the fixtures
 * (upstream has their vectors but the vocab files are too large), so their
 * splitters are pinned here by hand-worked cases and by agreement with the
 * published regex run by the JS engine over random strings. The GPT-2
 * splitter (covered by the vectors) gets the same differential test.
 */
import { UnsupportedError } from '../../lib/errors';
import { makeLlama3Splitter, preTokenizerFor, regexSplitter, splitGpt2, Splitter } from '../../lib/tokenizer/pretokenize';
import { Rng } from '../helpers/random';

const run = (s: Splitter, text: string): string[] => {
  const out: string[] = [];
  s(text, out);
  return out;
};

const llama3 = makeLlama3Splitter(3);
const qwen2 = makeLlama3Splitter(1);

// The tokenizer.json patterns, with (?i:...) spelled out as llama.cpp does.
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const LLAMA3_RE = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const QWEN2_RE = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const GPT2_RE = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

describe('llama3 splitter (hand-worked cases)', () => {
  test.each<[string, string[]]>([
    ['Hello world', ['Hello', ' world']],
    ["I'm here", ['I', "'m", ' here']],
    ["they'RE done, we'Ve", ['they', "'RE", ' done', ',', ' we', "'Ve"]],
    ["don't", ['don', "'t"]],
    ['12345', ['123', '45']],
    ['1234567', ['123', '456', '7']],
    ['abc123def', ['abc', '123', 'def']],
    [' 123', [' ', '123']],
    ['3.14', ['3', '.', '14']],
    ['  hello', [' ', ' hello']],
    ['hello\n\nworld', ['hello', '\n\n', 'world']],
    ['a\n  b', ['a', '\n', ' ', ' b']],
    ['x  \n\ty', ['x', '  \n', '\ty']],
    ['$hello', ['$hello']],
    ['hello, world!', ['hello', ',', ' world', '!']],
    [' !!!\n\nnext', [' !!!\n\n', 'next']],
    ['🚀 x', ['🚀', ' x']],
    ['end   ', ['end', '   ']],
    ['\u00a0word', ['\u00a0word']],
    ['a\u3000\u3000b', ['a', '\u3000', '\u3000b']],
  ])('%j', (text, expected) => {
    expect(run(llama3, text)).toEqual(expected);
    expect(run(regexSplitter(LLAMA3_RE), text)).toEqual(expected);
  });
});

describe('qwen2 splitter (hand-worked cases)', () => {
  test.each<[string, string[]]>([
    ['abc 2024', ['abc', ' ', '2', '0', '2', '4']],
    ['12345', ['1', '2', '3', '4', '5']],
    ["It's 3.5%", ['It', "'s", ' ', '3', '.', '5', '%']],
    ['你好世界', ['你好世界']],
    ['a\r\n\r\nb', ['a', '\r\n\r\n', 'b']],
  ])('%j', (text, expected) => {
    expect(run(qwen2, text)).toEqual(expected);
    expect(run(regexSplitter(QWEN2_RE), text)).toEqual(expected);
  });
});

describe('hand-written splitters agree with their regex on random text', () => {
  const pool = [
    ...'abcxyzABCXYZ', ...'0123456789', ' ', ' ', ' ', '\n', '\r', '\t', "'", "'", 's', 't', 'S', 'r', 'e', 'v', 'l', 'm', 'd', 'L', 'E',
    ...'.,!?-_()[]{}<>$%^&*+=|~`"/\\:;@#', 'é', 'ü', 'ñ', 'Ω', 'ж', '你', '好', '한', 'ا', '٣', '½', '²', 'Ⅻ',
    '🚀', '😶', '\u200d', '\ufe0f', '\u0301', '\u00a0', '\u3000', '\u0085', '\u2028', '\ufeff', '\u0000', '\u001f', '\ue000',
  ];
  const cases: [string, Splitter, string][] = [
    ['llama3', llama3, LLAMA3_RE],
    ['qwen2', qwen2, QWEN2_RE],
    ['gpt2', splitGpt2, GPT2_RE],
  ];
  test.each(cases)('%s', (_name, splitter, source) => {
    const re = regexSplitter(source);
    const rng = new Rng(1234);
    for (let n = 0; n < 3000; n++) {
      const len = rng.int(0, 24);
      let text = '';
      for (let i = 0; i < len; i++) text += rng.pick(pool);
      const got = run(splitter, text);
      expect(got.join('')).toBe(text);
      expect({ text, got }).toEqual({ text, got: run(re, text) });
    }
  });
});

describe('preTokenizerFor', () => {
  test('resolves names to families and flags as llama.cpp does', () => {
    expect(preTokenizerFor(undefined).type).toBe('default');
    expect(preTokenizerFor('llama-bpe')).toMatchObject({ type: 'llama3', ignoreMerges: true, addBos: true, cleanSpaces: true });
    expect(preTokenizerFor('qwen2')).toMatchObject({ type: 'qwen2', ignoreMerges: false, addBos: false, cleanSpaces: false });
    expect(preTokenizerFor('mpt').type).toBe('gpt2');
    expect(preTokenizerFor('olmo').type).toBe('gpt2');
    expect(preTokenizerFor('refact').type).toBe('starcoder');
    expect(preTokenizerFor('deepseek-coder').cleanSpaces).toBe(false);
  });

  test('an unknown name is an UnsupportedError that names it', () => {
    expect(() => preTokenizerFor('no-such-pre')).toThrow(UnsupportedError);
    expect(() => preTokenizerFor('no-such-pre')).toThrow(/'no-such-pre'/);
  });

  test('llama3 pre-tokenization of a mixed string', () => {
    const pre = preTokenizerFor('llama3');
    expect(pre.split("Hello, y'all! 1234567 🚀\n\n  ok")).toEqual([
      'Hello', ',', ' y', "'all", '!', ' ', '123', '456', '7', ' 🚀\n\n', ' ', ' ok',
    ]);
  });

  test('every step list keeps the text intact', () => {
    const text = "Hello, y'all! 3.14 ===== 你好 Cửa Việt \t\n 🚀 ''''```";
    for (const name of ['default', 'gpt-2', 'llama3', 'qwen2', 'falcon', 'starcoder', 'deepseek-llm', 'deepseek-coder', 'deepseek-v3', 'bloom', 'viking', 'tekken', 'chameleon']) {
      expect(preTokenizerFor(name).split(text).join('')).toBe(text);
    }
  });
});

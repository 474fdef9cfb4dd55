/**
 * The Tokenizer API: vocabulary loading, special tokens, decode options,
 * streaming, errors. A small hand-made vocabulary pins the SentencePiece
 * merge order without fixtures; the rest uses llama.cpp's vocab files.
 */
import { InvalidArgumentError, TokenizerError, UnsupportedError } from '../../lib/errors';
import { GgufMetadata, GgufValueType } from '../../lib/gguf/types';
import { TokenAttr, Tokenizer, TokenizerVocab, TokenType, vocabFromGgufMetadata } from '../../lib/tokenizer';
import { cleanUpSpaces } from '../../lib/tokenizer/clean-spaces';
import { loadTokenizer, vocabPath } from './fixtures';

/** A tiny SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then scored pieces. */
function tinySpm(pieces: [string, number][], extra: Partial<TokenizerVocab> = {}): Tokenizer {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  const scores: number[] = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TokenType.BYTE);
    scores.push(0);
  }
  for (const [text, score] of pieces) {
    tokens.push(text);
    types.push(TokenType.NORMAL);
    scores.push(score);
  }
  return new Tokenizer({ model: 'llama', tokens, scores: Float32Array.from(scores), tokenTypes: Int32Array.from(types), ...extra });
}

const texts = (tok: Tokenizer, ids: number[]): string[] => ids.map((id) => tok.tokenText(id));

describe('SentencePiece merge order (hand-made vocab)', () => {
  const tok = tinySpm([
    ['▁', -5],
    ['a', -5],
    ['b', -5],
    ['c', -5],
    ['▁a', -3],
    ['ab', -2],
    ['bc', -1],
    ['abc', -0.5],
    ['▁ab', -4],
  ]);

  test('highest score merges first', () => {
    // ▁ a b c: "bc" (-1) beats "ab" (-2) and "▁a" (-3); then "▁a" + "bc" is no piece,
    // "a"+"bc" = "abc" (-0.5) beats "▁a" (-3).
    expect(texts(tok, tok.encode('abc', { addSpecial: false }))).toEqual(['▁', 'abc']);
  });

  test('ties go to the leftmost pair', () => {
    const t2 = tinySpm([['▁', -1], ['a', -1], ['aa', -1]]);
    expect(texts(t2, t2.encode('aaa', { addSpecial: false }))).toEqual(['▁', 'aa', 'a']);
  });

  test('unknown characters fall back to UTF-8 byte tokens', () => {
    expect(texts(tok, tok.encode('aé', { addSpecial: false }))).toEqual(['▁a', '<0xC3>', '<0xA9>']);
    expect(tok.decode(tok.encode('aé'))).toBe('aé');
  });

  test('BOS per add_bos, space prefix per add_space_prefix', () => {
    expect(tok.encode('a')).toEqual([1, tok.encode('a', { addSpecial: false })[0]]);
    const noPrefix = tinySpm([['a', -1]], { addSpacePrefix: false, addBos: false, addEos: true });
    expect(texts(noPrefix, noPrefix.encode('a'))).toEqual(['a', '</s>']);
  });

  test('without byte tokens an unknown character becomes <unk>', () => {
    const bare = new Tokenizer({ model: 'llama', tokens: ['<unk>', '<s>', '</s>', '▁', 'a'] });
    expect(bare.encode('aé', { addSpecial: false })).toEqual([3, 4, 0]);
  });
});

describe('vocabFromGgufMetadata', () => {
  const entry = (type: GgufValueType, value: unknown) => ({ type, value }) as never;
  const strings = (values: string[]) => entry(GgufValueType.ARRAY, { elementType: GgufValueType.STRING, values });

  test('reads the standard keys', () => {
    const meta: GgufMetadata = new Map([
      ['general.name', entry(GgufValueType.STRING, 'tiny')],
      ['tokenizer.ggml.model', entry(GgufValueType.STRING, 'gpt2')],
      ['tokenizer.ggml.pre', entry(GgufValueType.STRING, 'qwen2')],
      ['tokenizer.ggml.tokens', strings(['a', 'b', 'ab', '<|endoftext|>'])],
      ['tokenizer.ggml.token_type', entry(GgufValueType.ARRAY, { elementType: GgufValueType.INT32, values: Int32Array.of(1, 1, 1, 3) })],
      ['tokenizer.ggml.merges', strings(['a b'])],
      ['tokenizer.ggml.eos_token_id', entry(GgufValueType.UINT32, 3)],
      ['tokenizer.ggml.bos_token_id', entry(GgufValueType.UINT64, 3n)],
      ['tokenizer.ggml.add_bos_token', entry(GgufValueType.BOOL, false)],
    ]);
    const v = vocabFromGgufMetadata(meta);
    expect(v).toMatchObject({ model: 'gpt2', pre: 'qwen2', name: 'tiny', eosId: 3, bosId: 3, addBos: false, merges: ['a b'] });
    const tok = new Tokenizer(v);
    expect(tok.encode('abab')).toEqual([2, 2]);
    expect(tok.isEog(3)).toBe(true);
    expect(tok.cleanSpaces).toBe(false);
    expect(tok.encode('ab<|endoftext|>', { parseSpecial: true })).toEqual([2, 3]);
  });

  test('an unknown tokenizer model is an UnsupportedError naming it', () => {
    const meta: GgufMetadata = new Map([
      ['tokenizer.ggml.model', entry(GgufValueType.STRING, 't5')],
      ['tokenizer.ggml.tokens', strings(['a'])],
    ]);
    expect(() => vocabFromGgufMetadata(meta)).toThrow(UnsupportedError);
    expect(() => vocabFromGgufMetadata(meta)).toThrow(/'t5'/);
  });

  test('an unknown pre-tokenizer is an UnsupportedError naming it', () => {
    expect(() => new Tokenizer({ model: 'gpt2', tokens: ['a'], merges: [], pre: 'klingon' })).toThrow(UnsupportedError);
    expect(() => new Tokenizer({ model: 'gpt2', tokens: ['a'], merges: [], pre: 'klingon' })).toThrow(/'klingon'/);
  });

  test('llama3 (llama-bpe) ignores merges for whole-vocab words and adds BOS', () => {
    const base: TokenizerVocab = { model: 'gpt2', tokens: ['a', 'b', 'c', 'ab', 'abc', '<|begin_of_text|>'], merges: ['a b'], bosId: 5 };
    const gpt2 = new Tokenizer({ ...base, pre: 'gpt-2' });
    const llama3 = new Tokenizer({ ...base, pre: 'llama-bpe' });
    expect(gpt2.encode('abc')).toEqual([3, 2]);
    expect(llama3.encode('abc')).toEqual([5, 4]);
    expect(llama3.encode('abc', { addSpecial: false })).toEqual([4]);
    expect(() => new Tokenizer({ ...base, pre: 'llama-bpe', bosId: undefined }).encode('abc')).toThrow(TokenizerError);
  });

  test('missing pieces are TokenizerErrors', () => {
    expect(() => vocabFromGgufMetadata(new Map())).toThrow(TokenizerError);
    const noMerges: GgufMetadata = new Map([
      ['tokenizer.ggml.model', entry(GgufValueType.STRING, 'gpt2')],
      ['tokenizer.ggml.tokens', strings(['a'])],
    ]);
    expect(() => vocabFromGgufMetadata(noMerges)).toThrow(/merges/);
  });
});

describe('special tokens (llama-spm, phi-3)', () => {
  let spm: Tokenizer;
  let phi3: Tokenizer;
  beforeAll(async () => {
    spm = await loadTokenizer(vocabPath('llama-spm'));
    phi3 = await loadTokenizer(vocabPath('phi-3'));
  });

  test('control token texts are parsed only on request', () => {
    const hello = spm.encode('Hello', { addSpecial: false });
    expect(spm.encode('<s>Hello', { addSpecial: false, parseSpecial: true })).toEqual([1, ...hello]);
    const plain = spm.encode('<s>Hello', { addSpecial: false });
    expect(plain).not.toContain(1);
    expect(spm.decode(plain)).toBe('<s>Hello');
  });

  test('phi-3 special tokens swallow the whitespace after them (rstrip), as in llama.cpp', () => {
    const user = phi3.encode('<|user|>', { addSpecial: false, parseSpecial: true });
    const end = phi3.encode('<|end|>', { addSpecial: false, parseSpecial: true });
    expect(user).toHaveLength(1);
    expect(end).toEqual([32007]);
    expect(phi3.tokenAttr(user[0]) & TokenAttr.RSTRIP).toBeTruthy();
    const ids = phi3.encode('<|user|>\nHello<|end|>\n', { addSpecial: false, parseSpecial: true });
    expect(ids).toEqual([user[0], ...phi3.encode('Hello', { addSpecial: false }), 32007]);
  });

  test('end of generation', () => {
    expect(spm.isEog(2)).toBe(true);
    expect(phi3.eogIds).toEqual(expect.arrayContaining([32000, 32007]));
    expect(phi3.isEog(phi3.bos as number)).toBe(false);
  });

  test('tokenToPiece and tokenBytes', () => {
    expect(spm.tokenToPiece(1)).toBe('<s>');
    expect(spm.tokenToPiece(1, { renderSpecial: false })).toBe('');
    const byteA = spm.encode('<0x41>', { addSpecial: false }); // the text, not the byte token
    expect(spm.decode(byteA)).toBe('<0x41>');
    const id41 = [...Array(spm.vocabSize).keys()].find((i) => spm.tokenText(i) === '<0x41>') as number;
    expect(spm.tokenToPiece(id41)).toBe('A');
    expect(Array.from(spm.tokenBytes(id41))).toEqual([0x41]);
    expect(spm.tokenToPiece(spm.encode('Hello', { addSpecial: false })[0])).toBe(' Hello');
  });

  test('decode options', () => {
    const ids = spm.encode('Hello world');
    expect(ids[0]).toBe(1);
    expect(spm.decode(ids)).toBe('Hello world');
    expect(spm.decode(ids, { renderSpecial: true })).toBe('<s>Hello world');
    expect(spm.decode(ids, { stripLeadingSpace: false })).toBe(' Hello world');
    expect(spm.decode(ids.slice(2))).toBe('world'); // a sequence start: its space prefix goes
  });

  test('invalid input', () => {
    expect(() => spm.decode([-1])).toThrow(InvalidArgumentError);
    expect(() => spm.decode([spm.vocabSize])).toThrow(InvalidArgumentError);
    expect(() => spm.decode([1.5])).toThrow(InvalidArgumentError);
    expect(() => spm.encode(42 as unknown as string)).toThrow(InvalidArgumentError);
    expect(() => spm.tokenText(-3)).toThrow(InvalidArgumentError);
    expect(() => spm.createStreamingDecoder().push(1e9)).toThrow(InvalidArgumentError);
  });
});

describe('byte-level BPE decoding (gpt-2)', () => {
  let gpt2: Tokenizer;
  beforeAll(async () => {
    gpt2 = await loadTokenizer(vocabPath('gpt-2'));
  });

  test('streaming holds back partial characters', () => {
    const text = '🚀 (normal) 😶‍🌫️ 你好 ⅻ';
    const ids = gpt2.encode(text);
    const dec = gpt2.createStreamingDecoder();
    const chunks = ids.map((id) => dec.push(id));
    chunks.push(dec.flush());
    expect(chunks.join('')).toBe(text);
    expect(chunks.some((c) => c === '')).toBe(true);
    for (const c of chunks) expect(c).not.toContain('\uFFFD');
  });

  test('cleanSpaces is opt-in', () => {
    const ids = gpt2.encode("Hello , world ! it 's");
    expect(gpt2.cleanSpaces).toBe(true);
    expect(gpt2.decode(ids)).toBe("Hello , world ! it 's");
    expect(gpt2.decode(ids, { cleanSpaces: true })).toBe("Hello, world! it's");
  });

  test('<|endoftext|> is control: parsed on request, hidden unless rendered', () => {
    const ids = gpt2.encode('a<|endoftext|>b', { parseSpecial: true });
    expect(ids).toContain(50256);
    expect(gpt2.decode(ids)).toBe('ab');
    expect(gpt2.decode(ids, { renderSpecial: true })).toBe('a<|endoftext|>b');
    expect(gpt2.encode('a<|endoftext|>b')).not.toContain(50256);
    expect(gpt2.isEog(50256)).toBe(true);
  });
});

test('cleanUpSpaces follows llama.cpp', () => {
  expect(cleanUpSpaces('Hello , world ! Why ? Yes .')).toBe('Hello, world! Why? Yes.');
  expect(cleanUpSpaces("a ' b")).toBe("a'b");
  expect(cleanUpSpaces("it 's we 're they 've I 'm")).toBe("it's we're they've I'm");
  expect(cleanUpSpaces("I 'll do n't he 'd")).toBe("I 'll do n't he 'd");
  expect(cleanUpSpaces('')).toBe('');
});

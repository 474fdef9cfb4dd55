/**
 * llama.cpp's tokenizer test vectors (shared/fixtures/llama.cpp-vocab), case by case.
 *
 * Each `.out` line was produced upstream with add_special_tokens=False, and
 * llama.cpp's own test-tokenizer-0 tokenizes with add_special = false and
 * parse_special = false. No input contains a special token's text, so both
 * parse_special settings must give the same ids; we check both.
 */
import { Tokenizer } from '../../lib/tokenizer';
import { loadTokenizer, readVectors, vocabPath } from './fixtures';

// bert-bge is WordPiece, which is lossy (lowercasing, accent stripping), so it has no round trip.
const VOCABS: { name: string; lossless: boolean }[] = [
  { name: 'llama-spm', lossless: true },
  { name: 'phi-3', lossless: true },
  { name: 'gpt-2', lossless: true },
  { name: 'falcon', lossless: true },
  { name: 'mpt', lossless: true },
  { name: 'deepseek-coder', lossless: true },
  { name: 'deepseek-llm', lossless: true },
  { name: 'starcoder', lossless: true },
  { name: 'refact', lossless: true },
  { name: 'bert-bge', lossless: false },
];

const label = (s: string): string => {
  const j = JSON.stringify(s);
  return j.length > 70 ? `${j.slice(0, 67)}...` : j;
};

describe.each(VOCABS)('llama.cpp vectors: $name', ({ name, lossless }) => {
  const cases = readVectors(name).map((c, i) => ({ ...c, title: `${name} #${i} ${label(c.input)}` }));
  let tok: Tokenizer;

  beforeAll(async () => {
    tok = await loadTokenizer(vocabPath(name));
  });

  test('has 46 cases', () => {
    expect(cases).toHaveLength(46);
  });

  test.each(cases)('encode $title', ({ input, expected }) => {
    expect(tok.encode(input, { addSpecial: false, parseSpecial: false })).toEqual(expected);
    expect(tok.encode(input, { addSpecial: false, parseSpecial: true })).toEqual(expected);
  });

  if (lossless) {
    test.each(cases)('decode $title', ({ input, expected }) => {
      expect(tok.decode(expected)).toBe(input);
      const stream = tok.createStreamingDecoder();
      let text = '';
      for (const id of expected) text += stream.push(id);
      expect(text + stream.flush()).toBe(input);
    });
  }
});

describe('gpt-neox vocab (no upstream vectors)', () => {
  test('loads with the default pre-tokenizer and round-trips', async () => {
    const tok = await loadTokenizer(vocabPath('gpt-neox'));
    expect(tok.kind).toBe('bpe');
    expect(tok.preTokenizer).toBe('default'); // the file has no tokenizer.ggml.pre
    const text = 'Hello world! This is a test.';
    const ids = tok.encode(text, { addSpecial: false });
    expect(ids.map((id) => tok.tokenText(id))).toEqual(['Hello', 'Ġworld', '!', 'ĠThis', 'Ġis', 'Ġa', 'Ġtest', '.']);
    expect(tok.decode(ids)).toBe(text);
  });
});

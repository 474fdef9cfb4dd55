/**
 * The stories260K SentencePiece tokenizer (512 pieces, byte fallback) on
 * the figures in shared/fixtures/PROVENANCE.md, plus streaming decoding of
 * characters that only exist as byte tokens.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readGguf } from '../../lib/gguf/reader';
import { Tokenizer } from '../../lib/tokenizer';
import { resolveVocab, ResolvedVocab } from '../../lib/tokenizer/resolve';
import { encodeSpm, mergeSegment } from '../../lib/tokenizer/spm';
import { vocabFromGgufMetadata } from '../../lib/tokenizer/vocab';
import { fixturesDir, vocabPath } from './fixtures';

let tok: Tokenizer;
let resolved: ResolvedVocab;
let stories: string;

beforeAll(async () => {
  const gguf = await readGguf(path.join(fixturesDir(), 'stories260K', 'stories260K.gguf'));
  tok = Tokenizer.fromGgufMetadata(gguf.metadata);
  resolved = resolveVocab(vocabFromGgufMetadata(gguf.metadata));
  stories = fs.readFileSync(path.join(fixturesDir(), 'text', 'tinystories_val.txt'), 'utf8');
});

/** Feeds ids one by one; returns every chunk the decoder emitted, the flush last. */
function streamChunks(ids: number[]): string[] {
  const dec = tok.createStreamingDecoder();
  const chunks = ids.map((id) => dec.push(id));
  chunks.push(dec.flush());
  return chunks;
}

test('vocabulary facts', () => {
  expect(tok.kind).toBe('spm');
  expect(tok.vocabSize).toBe(512);
  expect([tok.unk, tok.bos, tok.eos]).toEqual([0, 1, 2]);
  expect(tok.addBos).toBe(true);
  expect(tok.addEos).toBe(false);
  expect(tok.isEog(2)).toBe(true);
  expect(tok.isEog(1)).toBe(false);
  expect(tok.tokenText(13)).toBe('<0x0A>');
  expect(tok.nl).toBe(13);
});

test('"Once upon a time" with BOS is [1, 403, 407, 261, 378] (node-llama-cpp)', () => {
  expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
  expect(tok.encode('Once upon a time', { addSpecial: false })).toEqual([403, 407, 261, 378]);
  expect(tok.decode([1, 403, 407, 261, 378])).toBe('Once upon a time');
  expect(tok.decode([1, 403, 407, 261, 378], { renderSpecial: true })).toBe('<s>Once upon a time');
  expect(tok.decode([403, 407], { stripLeadingSpace: false })).toBe(' Once upon');
});

test('a text cut before a space encodes as its halves, the second without the space prefix', () => {
  const text = stories.slice(0, 4000);
  const cuts = [...text.matchAll(/ /g)].map((m) => m.index!).filter((_, k) => k % 37 === 5);
  expect(cuts.length).toBeGreaterThan(10);
  const whole = tok.encode(text, { addSpecial: false });
  for (const c of cuts) {
    const head = tok.encode(text.slice(0, c), { addSpecial: false });
    const tail = tok.encode(text.slice(c), { addSpecial: false, spacePrefix: false });
    expect([...head, ...tail]).toEqual(whole);
    // With the prefix (a text of its own) the tail starts with one more space.
    const alone = tok.encode(text.slice(c), { addSpecial: false });
    expect(tok.decode(alone, { stripLeadingSpace: false })).toBe(' ' + text.slice(c));
  }
  // After a special token the prefix applies again, continuation or not.
  expect(tok.encode('<s>Once upon a time', { addSpecial: false, parseSpecial: true, spacePrefix: false })).toEqual([1, 403, 407, 261, 378]);
});

test('the greedy sample from PROVENANCE decodes to its text', () => {
  const ids = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394];
  const text = ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw';
  // A continuation: its first piece keeps its space.
  expect(tok.decode(ids, { stripLeadingSpace: false })).toBe(text);
  expect(tok.decode([1, 403, 407, 261, 378, ...ids])).toBe('Once upon a time' + text);
});

test('tinystories_val.txt: 393,018 tokens without BOS, exact round trip, fast', () => {
  const t0 = performance.now();
  const ids = tok.encode(stories, { addSpecial: false });
  const encodeMs = performance.now() - t0;
  const t1 = performance.now();
  const back = tok.decode(ids);
  const decodeMs = performance.now() - t1;
  console.log(
    `stories260K: encoded ${stories.length} chars (${Buffer.byteLength(stories)} bytes) into ${ids.length} tokens ` +
      `in ${encodeMs.toFixed(0)} ms; decoded in ${decodeMs.toFixed(0)} ms`,
  );
  expect(ids.length).toBe(393018);
  expect(ids.filter((id) => tok.tokenAttr(id) & 32 /* BYTE */).length).toBe(8827);
  expect(back).toBe(stories);
  expect(encodeMs).toBeLessThan(5000);
});

test('tinyshakespeare.txt: 693,363 tokens, exact round trip', () => {
  const text = fs.readFileSync(path.join(fixturesDir(), 'text', 'tinyshakespeare.txt'), 'utf8');
  const ids = tok.encode(text, { addSpecial: false });
  expect(ids.length).toBe(693363);
  expect(tok.decode(ids)).toBe(text);
});

test('segmented SPM equals the single-heap algorithm over the whole text', () => {
  const texts = [stories, stories.slice(1000, 50000).replace(/\n/g, ' '), '▁a▁▁b  c\u2581\u2581']
    .map((t) => ('\u2581' + t).replace(/ /g, '\u2581'));
  for (const t of texts) {
    const fast: number[] = [];
    encodeSpm(t, resolved, fast);
    const reference: number[] = [];
    mergeSegment(t, resolved, reference);
    expect(fast).toEqual(reference);
  }
});

test('segmented SPM equals the single-heap algorithm on a 32k vocabulary (llama-spm)', async () => {
  const v = resolveVocab(vocabFromGgufMetadata((await readGguf(vocabPath('llama-spm'))).metadata));
  const sample = ('\u2581' + stories.slice(0, 60000) + ' 🚀 你好 Cửa Việt ½ \t\t  x').replace(/ /g, '\u2581');
  const fast: number[] = [];
  encodeSpm(sample, v, fast);
  const reference: number[] = [];
  mergeSegment(sample, v, reference);
  expect(fast).toEqual(reference);
});

describe('streaming decoder on byte-fallback text', () => {
  const samples = [
    'Lily saw a 🐶 and said 你好, café!',
    '🚀🚀 emoji, 中文字符, ελληνικά, עברית, 😶‍🌫️ end',
    'Ça va? Ünïcödé — ✓ ☃ 𝄞 (a 4-byte character)',
  ];

  test.each(samples)('%s', (text) => {
    const ids = tok.encode(text);
    expect(ids[0]).toBe(1);
    // These characters are not pieces of the 512-token vocab: they travel as <0xNN> bytes.
    expect(ids.some((id) => tok.tokenAttr(id) & 32)).toBe(true);
    const whole = tok.decode(ids);
    expect(whole).toBe(text);
    const chunks = streamChunks(ids);
    expect(chunks.join('')).toBe(whole);
    for (const c of chunks) expect(c).not.toContain('\uFFFD');
    // Some pushes had to hold back part of a character.
    expect(chunks.filter((c) => c === '').length).toBeGreaterThan(0);
  });

  test('whole tinystories stream equals decode, and never emits U+FFFD', () => {
    const ids = tok.encode(stories, { addSpecial: false });
    const chunks = streamChunks(ids);
    expect(chunks.join('')).toBe(stories);
    expect(stories.includes('\uFFFD')).toBe(false);
    expect(chunks.some((c) => c.includes('\uFFFD'))).toBe(false);
  });

  test('a cut-off character becomes one U+FFFD in both decode and the stream', () => {
    // "ж" is <0xD0> <0xB6>; send only the first byte.
    const byteId = (b: number): number => {
      for (let id = 0; id < tok.vocabSize; id++) if (tok.tokenText(id) === `<0x${b.toString(16).toUpperCase()}>`) return id;
      throw new Error('no byte token');
    };
    const cut = [...tok.encode('caf', { addSpecial: false }), byteId(0xd0)];
    const whole = tok.decode(cut);
    expect(whole).toBe('caf\uFFFD');
    expect(streamChunks(cut).join('')).toBe(whole);
  });

  test('flush resets: the decoder can start a new sequence', () => {
    const dec = tok.createStreamingDecoder();
    const ids = tok.encode('Hi 🐶');
    let a = '';
    for (const id of ids) a += dec.push(id);
    a += dec.flush();
    let b = '';
    for (const id of ids) b += dec.push(id);
    b += dec.flush();
    expect(a).toBe('Hi 🐶');
    expect(b).toBe(a);
  });
});

/**
 * WordPiece (`tokenizer.ggml.model = bert`) as llama.cpp runs it.
 *
 * Preprocessing: each code point is replaced by the first code point of its
 * canonical decomposition (which drops accents) and lowercased; whitespace
 * separates words; control characters vanish; punctuation, ASCII symbols and
 * CJK ideographs become one-character words. Each word gets the U+2581
 * prefix llama.cpp's converter gives word-initial pieces, then is matched
 * greedily longest-first; a word with an unmatchable rest becomes one <unk>.
 */
import { ResolvedVocab } from './resolve';
import {
  CPT_CONTROL,
  CPT_PUNCTUATION,
  CPT_SYMBOL,
  CPT_WHITESPACE,
  cptFlags,
  nfdFirst,
  toLowerCp,
} from './unicode';

function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b920 && cp <= 0x2ceaf) || // 0x2B820 in Unicode; HF's Rust code (and llama.cpp) use 0x2B920
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

export function wordPieceWords(text: string): string[] {
  const words: string[] = [];
  let cur = '';
  for (const ch of text) {
    const cp = nfdFirst(ch.codePointAt(0) as number);
    const f = cptFlags(cp);
    if (f & CPT_WHITESPACE) {
      if (cur.length > 0) words.push(cur);
      cur = '';
      continue;
    }
    if (cp === 0 || cp === 0xfffd || f & CPT_CONTROL) continue;
    const s = String.fromCodePoint(toLowerCp(cp));
    if (f & CPT_PUNCTUATION || (cp < 0x7f && f & CPT_SYMBOL) || isChineseChar(cp)) {
      if (cur.length > 0) words.push(cur);
      words.push(s);
      cur = '';
    } else {
      cur += s;
    }
  }
  if (cur.length > 0) words.push(cur);
  return words;
}

/** Tokenizes one raw-text fragment, appending ids to `out`. */
export function encodeWpm(text: string, vocab: ResolvedVocab, out: number[]): void {
  const { textToId, maxTokenLength } = vocab;
  for (const w of wordPieceWords(text)) {
    const word = '\u2581' + w;
    const n = word.length;
    const mark = out.length;
    let ok = true;
    for (let i = 0; i < n && ok; ) {
      ok = false;
      for (let j = Math.min(n, i + maxTokenLength); j > i; j--) {
        const id = textToId.get(word.slice(i, j));
        if (id !== undefined) {
          out.push(id);
          i = j;
          ok = true;
          break;
        }
      }
    }
    if (!ok) out.length = mark;
    if (out.length === mark) {
      if (vocab.ids.unk !== null) out.push(vocab.ids.unk);
    }
  }
}

/**
 * Byte-level BPE as llama.cpp runs it (`tokenizer.ggml.model = gpt2`).
 *
 * The pre-tokenizer cuts the text into words; each word's UTF-8 bytes are
 * spelled with GPT-2's byte characters; then adjacent symbols are merged by
 * the lowest merge rank (position in `tokenizer.ggml.merges`; ties: leftmost)
 * until no ranked pair remains. Each final symbol is looked up in the vocab.
 */
import { PairHeap, mergeBestPairs } from './heap';
import { BYTE_TO_CHAR } from './byte-level';
import { ResolvedVocab } from './resolve';
import { pushUtf8 } from './unicode';

/** A word spelled in GPT-2 byte characters (one BMP character per UTF-8 byte). */
export function toByteLevel(word: string): string {
  let s = '';
  const bytes: number[] = [];
  for (let i = 0; i < word.length; i++) {
    const c = word.charCodeAt(i);
    if (c < 0x80) {
      s += BYTE_TO_CHAR[c];
      continue;
    }
    let cp = c;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < word.length && (word.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      cp = 0x10000 + ((c - 0xd800) << 10) + (word.charCodeAt(i + 1) - 0xdc00);
      i++;
    }
    bytes.length = 0;
    pushUtf8(bytes, cp);
    for (const b of bytes) s += BYTE_TO_CHAR[b];
  }
  return s;
}

/** Merges one byte-level word and appends its ids. */
export function mergeWord(word: string, vocab: ResolvedVocab, out: number[]): void {
  const m = word.length;
  if (m === 0) return;
  const { textToId } = vocab;
  const ranks = vocab.mergeRanks as Map<string, number>;
  if (vocab.ignoreMerges) {
    const id = textToId.get(word);
    if (id !== undefined) {
      out.push(id);
      return;
    }
  }
  // Symbols are single characters at first (each byte character is one UTF-16 unit).
  const len = new Int32Array(m).fill(1);
  const prev = new Int32Array(m);
  const next = new Int32Array(m);
  for (let i = 0; i < m; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < m ? i + 1 : -1;
  }
  // Lowest rank first; the size at queue time tells a pair that went stale.
  const heap = new PairHeap(m);
  const tryAdd = (left: number, right: number): void => {
    if (left < 0 || right < 0) return;
    const rank = ranks.get(word.substr(left, len[left]) + ' ' + word.substr(right, len[right]));
    if (rank === undefined) return;
    heap.push(rank, left, right, len[left] + len[right]);
  };
  for (let i = 1; i < m; i++) tryAdd(i - 1, i);
  mergeBestPairs(heap, len, prev, next, tryAdd);
  for (let i = 0; i !== -1; i = next[i]) {
    const piece = word.substr(i, len[i]);
    const id = textToId.get(piece);
    if (id !== undefined) {
      out.push(id);
      continue;
    }
    // Not in the vocab: llama.cpp tries each byte of the piece as a one-byte token
    // (only ASCII bytes can be such tokens) and drops the rest.
    for (let k = 0; k < piece.length; k++) {
      const c = piece.charCodeAt(k);
      if (c < 0x80) {
        const one = textToId.get(piece[k]);
        if (one !== undefined) out.push(one);
      }
    }
  }
}

const CACHE_LIMIT = 1 << 16;

/** Tokenizes one raw-text fragment, appending ids to `out`. */
export function encodeBpe(text: string, vocab: ResolvedVocab, out: number[], cache?: Map<string, number[]>): void {
  const words = (vocab.pre as NonNullable<ResolvedVocab['pre']>).split(text);
  for (const w of words) {
    let ids = cache?.get(w);
    if (ids === undefined) {
      ids = [];
      mergeWord(toByteLevel(w), vocab, ids);
      if (cache !== undefined) {
        if (cache.size >= CACHE_LIMIT) cache.clear();
        cache.set(w, ids);
      }
    }
    for (const id of ids) out.push(id);
  }
}

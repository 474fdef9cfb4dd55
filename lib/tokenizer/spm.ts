/**
 * SentencePiece-style BPE as llama.cpp runs it (`tokenizer.ggml.model = llama`).
 *
 * The text (spaces already escaped to U+2581) starts as one symbol per code
 * point. Repeatedly, among adjacent pairs whose concatenation is a vocabulary
 * piece, the pair whose piece has the highest score is merged (ties: the
 * leftmost). A symbol left outside the vocabulary is emitted as its UTF-8
 * bytes through the `<0xNN>` byte tokens.
 *
 * Speed: a merge can only join two code points a, b if some vocabulary piece
 * contains "ab". Where no piece does (before each U+2581 in a typical vocab)
 * nothing ever merges across, so the text splits there into segments that
 * evolve independently — the global highest-score-first order restricted to
 * one segment is that segment's own order. Each segment runs the merge loop
 * on its own small heap, and repeated segments (words) come from a cache.
 */
import { TokenizerError } from '../errors';
import { PairHeap, mergeBestPairs } from './heap';
import { ResolvedVocab } from './resolve';
import { pushUtf8 } from './unicode';

const PAIR_BASE = 0x110000;

// Per vocabulary: every adjacent code point pair (a * PAIR_BASE + b) inside some token text.
const pairSets = new WeakMap<ResolvedVocab, Set<number>>();

function pairSetOf(vocab: ResolvedVocab): Set<number> {
  let set = pairSets.get(vocab);
  if (set === undefined) {
    set = new Set();
    for (const t of vocab.texts) {
      let prev = -1;
      for (const ch of t) {
        const cp = ch.codePointAt(0) as number;
        if (prev >= 0) set.add(prev * PAIR_BASE + cp);
        prev = cp;
      }
    }
    pairSets.set(vocab, set);
  }
  return set;
}

const CACHE_LIMIT = 1 << 16;

/** Tokenizes one escaped fragment, appending ids to `out`. */
export function encodeSpm(text: string, vocab: ResolvedVocab, out: number[], cache?: Map<string, number[]>): void {
  const pairs = pairSetOf(vocab);
  let segStart = 0;
  let prevCp = -1;
  for (let i = 0; i < text.length; ) {
    const cp = text.codePointAt(i) as number;
    if (prevCp >= 0 && !pairs.has(prevCp * PAIR_BASE + cp)) {
      encodeSegment(text.slice(segStart, i), vocab, out, cache);
      segStart = i;
    }
    prevCp = cp;
    i += cp > 0xffff ? 2 : 1;
  }
  if (segStart < text.length) encodeSegment(segStart === 0 ? text : text.slice(segStart), vocab, out, cache);
}

function encodeSegment(seg: string, vocab: ResolvedVocab, out: number[], cache: Map<string, number[]> | undefined): void {
  let ids = cache?.get(seg);
  if (ids === undefined) {
    ids = [];
    mergeSegment(seg, vocab, ids);
    if (cache !== undefined) {
      if (cache.size >= CACHE_LIMIT) cache.clear();
      cache.set(seg, ids);
    }
  }
  for (const id of ids) out.push(id);
}

/**
 * The merge loop over the whole of `text` as one segment: the plain
 * algorithm, kept as the reference that encodeSpm must match (tests check it).
 */
export function mergeSegment(text: string, vocab: ResolvedVocab, out: number[]): void {
  const { textToId, scores } = vocab;

  // Symbols: [start, start + len) in UTF-16 units; len 0 once merged away.
  let count = 0;
  const start = new Int32Array(text.length);
  const len = new Int32Array(text.length);
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    const w = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
    start[count] = i;
    len[count] = w;
    count++;
    i += w;
  }
  const prev = new Int32Array(count);
  const next = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < count ? i + 1 : -1;
  }

  // Highest score first = smallest negated score; the size (UTF-16 units) at
  // queue time tells a pair that went stale because a side merged meanwhile.
  const heap = new PairHeap(count);
  const tryAdd = (left: number, right: number): void => {
    if (left < 0 || right < 0) return;
    const size = len[left] + len[right];
    const id = textToId.get(text.substr(start[left], size));
    if (id === undefined) return;
    heap.push(-scores[id], left, right, size);
  };
  for (let i = 1; i < count; i++) tryAdd(i - 1, i);

  mergeBestPairs(heap, len, prev, next, tryAdd);

  for (let i = 0; i !== -1; i = next[i]) {
    const piece = text.substr(start[i], len[i]);
    const id = textToId.get(piece);
    if (id !== undefined) {
      out.push(id);
      continue;
    }
    byteFallback(piece, vocab, out);
  }
}

function byteFallback(piece: string, vocab: ResolvedVocab, out: number[]): void {
  const bytes: number[] = [];
  pushUtf8(bytes, piece.codePointAt(0) as number);
  const ids: number[] = [];
  for (const b of bytes) {
    const id = vocab.byteTokens[b];
    if (id < 0) {
      // No byte tokens: SentencePiece without byte fallback emits <unk> for the character.
      if (vocab.ids.unk !== null) {
        out.push(vocab.ids.unk);
        return;
      }
      throw new TokenizerError(`cannot tokenize ${JSON.stringify(piece)}: no byte token <0x${b.toString(16).toUpperCase().padStart(2, '0')}> and no unknown token`);
    }
    ids.push(id);
  }
  for (const id of ids) out.push(id);
}

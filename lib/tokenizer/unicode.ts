/**
 * Code point classification as llama.cpp's tokenizers see it.
 *
 * llama.cpp classifies every code point by its Unicode general category
 * (one of number, letter, punctuation, accent mark, symbol, separator,
 * control, undefined) plus a separate "whitespace" flag taken from the
 * Unicode White_Space property. We get the categories from the JS regex
 * engine (`\p{..}` with the `u` flag) and cache them per code point.
 */

export const CPT_NUMBER = 0x0001; // \p{N}
export const CPT_LETTER = 0x0002; // \p{L}
export const CPT_PUNCTUATION = 0x0004; // \p{P}
export const CPT_ACCENT_MARK = 0x0008; // \p{M}
export const CPT_SYMBOL = 0x0010; // \p{S}
export const CPT_SEPARATOR = 0x0020; // \p{Z}
export const CPT_CONTROL = 0x0040; // \p{Cc} \p{Cf} \p{Co} \p{Cs}
export const CPT_UNDEFINED = 0x0080; // \p{Cn}
export const CPT_WHITESPACE = 0x0100; // White_Space (see isWhitespace)
const CPT_COMPUTED = 0x8000;

export const MAX_CODEPOINT = 0x10ffff;

/**
 * White_Space: what Python's and Rust's regex `\s` match, and what llama.cpp
 * treats as whitespace. Unlike JS `\s` it includes U+0085 and excludes U+FEFF.
 */
export function isWhitespace(cp: number): boolean {
  if (cp <= 0x20) return cp === 0x20 || (cp >= 0x09 && cp <= 0x0d);
  if (cp < 0x85) return false;
  return (
    cp === 0x85 ||
    cp === 0xa0 ||
    cp === 0x1680 ||
    (cp >= 0x2000 && cp <= 0x200a) ||
    cp === 0x2028 ||
    cp === 0x2029 ||
    cp === 0x202f ||
    cp === 0x205f ||
    cp === 0x3000
  );
}

const RE_N = /\p{N}/u;
const RE_L = /\p{L}/u;
const RE_P = /\p{P}/u;
const RE_M = /\p{M}/u;
const RE_S = /\p{S}/u;
const RE_Z = /\p{Z}/u;
const RE_CN = /\p{Cn}/u;

// Lazily filled: one 16-bit entry per code point (2.2 MB once touched).
let table: Uint16Array | null = null;

function classify(cp: number): number {
  const ch = String.fromCodePoint(cp);
  let f: number;
  if (RE_L.test(ch)) f = CPT_LETTER;
  else if (RE_N.test(ch)) f = CPT_NUMBER;
  else if (RE_P.test(ch)) f = CPT_PUNCTUATION;
  else if (RE_M.test(ch)) f = CPT_ACCENT_MARK;
  else if (RE_S.test(ch)) f = CPT_SYMBOL;
  else if (RE_Z.test(ch)) f = CPT_SEPARATOR;
  else if (RE_CN.test(ch)) f = CPT_UNDEFINED;
  else f = CPT_CONTROL; // Cc, Cf, Co, Cs
  if (isWhitespace(cp)) f |= CPT_WHITESPACE;
  return f;
}

/** Category flags of a code point; 0 only for values outside Unicode. */
export function cptFlags(cp: number): number {
  if (cp < 0 || cp > MAX_CODEPOINT) return 0;
  if (table === null) table = new Uint16Array(MAX_CODEPOINT + 1);
  const v = table[cp];
  if (v !== 0) return v & ~CPT_COMPUTED;
  const f = classify(cp);
  table[cp] = f | CPT_COMPUTED;
  return f;
}

/** The code points of a JS string (a lone surrogate stays a code point of its own). */
export function codePoints(text: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < text.length; ) {
    const cp = text.codePointAt(i) as number;
    out.push(cp);
    i += cp > 0xffff ? 2 : 1;
  }
  return out;
}

/** Simple one-to-one lowercase mapping: the first code point of the full lowercase form. */
export function toLowerCp(cp: number): number {
  if (cp < 0x80) return cp >= 0x41 && cp <= 0x5a ? cp + 32 : cp;
  const lower = String.fromCodePoint(cp).toLowerCase();
  return lower.codePointAt(0) as number;
}

const nfdCache = new Map<number, number>();

/**
 * llama.cpp's "NFD" for WordPiece: each code point maps to the first code
 * point of its canonical decomposition (so accents are dropped, and nothing
 * is ever inserted).
 */
export function nfdFirst(cp: number): number {
  if (cp < 0xc0) return cp;
  let v = nfdCache.get(cp);
  if (v === undefined) {
    v = String.fromCodePoint(cp).normalize('NFD').codePointAt(0) as number;
    nfdCache.set(cp, v);
  }
  return v;
}

/** UTF-8 bytes of one code point appended to `out`; lone surrogates become U+FFFD. */
export function pushUtf8(out: number[], cp: number): void {
  if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
}

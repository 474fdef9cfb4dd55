/**
 * GPT-2's reversible byte <-> unicode mapping used by byte-level BPE.
 *
 * Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the
 * remaining 68 bytes (controls, space, DEL, NBSP, soft hyphen ...) are given
 * the code points 256, 257, ... in increasing byte order. So a space is 'Ġ'
 * (U+0120) and a newline 'Ċ' (U+010A).
 */

function isSelfMapped(b: number): boolean {
  return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/** BYTE_TO_CHAR[b] is the one-character string that stands for byte b. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const out: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(isSelfMapped(b) ? b : next++);
  return out;
})();

const CHAR_TO_BYTE: ReadonlyMap<number, number> = (() => {
  const m = new Map<number, number>();
  for (let b = 0; b < 256; b++) m.set(BYTE_TO_CHAR[b].charCodeAt(0), b);
  return m;
})();

/** The byte a mapped code point stands for, or -1 if it is not one of the 256. */
export function charToByte(cp: number): number {
  const b = CHAR_TO_BYTE.get(cp);
  return b === undefined ? -1 : b;
}

/**
 * Bytes of a byte-level token text. A character outside the mapping (a token a
 * converter added verbatim) contributes its own UTF-8, so nothing is lost;
 * llama.cpp writes an "[UNK_BYTE_0x..]" marker there instead.
 */
export function byteLevelToBytes(text: string, encoder: { encode(s: string): Uint8Array }): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = charToByte(ch.codePointAt(0) as number);
    if (b >= 0) out.push(b);
    else for (const x of encoder.encode(ch)) out.push(x);
  }
  return Uint8Array.from(out);
}

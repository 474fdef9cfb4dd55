/**
 * Special-token splitting: before any model-specific tokenization, the text
 * is cut at every occurrence of a special token's text (llama.cpp's
 * `tokenizer_st_partition`).
 *
 * Tokens are tried longest first (UTF-8 length, then id). User-defined tokens
 * are always split out — that is how neox-style vocabularies (mpt, olmo)
 * keep their whitespace-run tokens — while control and unknown tokens are
 * recognised only when the caller asks to parse special tokens, so plain
 * user text can never smuggle in a `<s>` or `<|im_end|>`.
 */
import { TokenAttr } from './attrs';

export interface SpecialToken {
  id: number;
  text: string;
  attr: number;
}

/** A piece of input: raw text still to tokenize, or an already-resolved token id. */
export type Fragment = string | number;

// C isspace(): what llama.cpp strips next to lstrip/rstrip tokens.
function isCSpace(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d);
}

function trimEndCSpace(s: string): string {
  let e = s.length;
  while (e > 0 && isCSpace(s.charCodeAt(e - 1))) e--;
  return e === s.length ? s : s.slice(0, e);
}

function trimStartCSpace(s: string): string {
  let b = 0;
  while (b < s.length && isCSpace(s.charCodeAt(b))) b++;
  return b === 0 ? s : s.slice(b);
}

/**
 * Splits `text` into raw-text fragments and special-token ids. `specials`
 * must already be in priority order (see `resolve.ts`).
 */
export function splitSpecialTokens(text: string, specials: readonly SpecialToken[], parseSpecial: boolean): Fragment[] {
  if (text.length === 0) return [];
  let fragments: Fragment[] = [text];
  for (const sp of specials) {
    if (!parseSpecial && sp.attr & (TokenAttr.CONTROL | TokenAttr.UNKNOWN)) continue;
    // Every fragment is a piece of `text`, so a token absent from it is absent everywhere.
    if (sp.text.length === 0 || text.indexOf(sp.text) < 0) continue;
    const next: Fragment[] = [];
    for (const f of fragments) {
      if (typeof f === 'number') {
        next.push(f);
        continue;
      }
      let rest = f;
      for (;;) {
        const at = rest.indexOf(sp.text);
        if (at < 0) {
          next.push(rest);
          break;
        }
        let left = rest.slice(0, at);
        if (sp.attr & TokenAttr.LSTRIP) left = trimEndCSpace(left);
        if (left.length > 0) next.push(left);
        next.push(sp.id);
        rest = rest.slice(at + sp.text.length);
        if (sp.attr & TokenAttr.RSTRIP) rest = trimStartCSpace(rest);
        if (rest.length === 0) break;
      }
    }
    fragments = next;
  }
  return fragments;
}

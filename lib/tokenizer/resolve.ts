/**
 * From a TokenizerVocab (plain data) to everything the tokenizers look up:
 * the text -> id map, per-token attributes, special ids with llama.cpp's
 * defaults, the end-of-generation set, and the ordered special-token list.
 */
import { TokenizerError } from '../errors';
import { TokenAttr, attrFromTokenType } from './attrs';
import { PreTokenizer, preTokenizerFor } from './pretokenize';
import { SpecialToken } from './special';
import { TokenizerVocab } from './vocab';

export type TokenizerKind = 'spm' | 'bpe' | 'wpm';

export interface SpecialIds {
  bos: number | null;
  eos: number | null;
  eot: number | null;
  eom: number | null;
  unk: number | null;
  sep: number | null;
  pad: number | null;
  mask: number | null;
  fimPre: number | null;
  fimSuf: number | null;
  fimMid: number | null;
  fimPad: number | null;
  fimRep: number | null;
  fimSep: number | null;
}

export interface ResolvedVocab {
  kind: TokenizerKind;
  texts: string[];
  scores: Float32Array;
  attrs: Uint16Array;
  textToId: Map<string, number>;
  ids: SpecialIds;
  /** Newline token: byte token 0x0A (SPM), 'Ċ' (BPE); may be null. */
  nl: number | null;
  addBos: boolean;
  addEos: boolean;
  addSep: boolean;
  addSpacePrefix: boolean;
  cleanSpaces: boolean;
  ignoreMerges: boolean;
  /** BPE only. */
  pre: PreTokenizer | null;
  /** BPE only: "left right" -> rank (first occurrence wins). */
  mergeRanks: Map<string, number> | null;
  /** SPM only: byte value -> "<0xNN>" token id, or -1. */
  byteTokens: Int32Array;
  /** Longest token text, in UTF-16 units (WordPiece search bound). */
  maxTokenLength: number;
  specials: SpecialToken[];
  eog: Set<number>;
}

// Texts llama.cpp recognises as end-of-turn / end-of-generation / FIM tokens.
const EOT_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<EOT>', '_<EOT>', '<｜end▁of▁sentence｜>', '<end_of_utterance>'];
const EOM_TEXTS = ['<|eom_id|>'];
const FIM_PRE_TEXTS = ['<|fim_prefix|>', '<fim-prefix>', '<｜fim▁begin｜>', '<PRE>'];
const FIM_SUF_TEXTS = ['<|fim_suffix|>', '<fim-suffix>', '<｜fim▁hole｜>', '<SUF>'];
const FIM_MID_TEXTS = ['<|fim_middle|>', '<fim-middle>', '<｜fim▁end｜>', '<MID>'];
const FIM_PAD_TEXTS = ['<|fim_pad|>', '<fim-pad>', '<PAD>'];
const FIM_REP_TEXTS = ['<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>'];
const FIM_SEP_TEXTS = ['<|file_sep|>'];
const EOG_TEXTS = [
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<end_of_turn>', '<|endoftext|>',
  '<|eom_id|>', '<EOT>', '_<EOT>', '<|end_of_text|>', '<end_of_utterance>',
];

const utf8Length = (s: string): number => Buffer.byteLength(s, 'utf8');

export function resolveVocab(v: TokenizerVocab): ResolvedVocab {
  if (!Array.isArray(v.tokens) || v.tokens.length === 0) throw new TokenizerError('the vocabulary has no tokens');
  const n = v.tokens.length;
  const kind: TokenizerKind = v.model === 'llama' ? 'spm' : v.model === 'gpt2' ? 'bpe' : 'wpm';
  if (v.scores !== undefined && v.scores.length !== n) throw new TokenizerError(`${v.scores.length} scores for ${n} tokens`);
  if (v.tokenTypes !== undefined && v.tokenTypes.length !== n) throw new TokenizerError(`${v.tokenTypes.length} token types for ${n} tokens`);

  const texts = new Array<string>(n);
  const attrs = new Uint16Array(n);
  const textToId = new Map<string, number>();
  let maxTokenLength = 0;
  for (let i = 0; i < n; i++) {
    let t = v.tokens[i];
    if (typeof t !== 'string') throw new TokenizerError(`token ${i} is not a string`);
    if (t.length === 0) t = `[EMPTY_${i}]`; // as llama.cpp does
    texts[i] = t;
    textToId.set(t, i); // a repeated text maps to its last id, as in llama.cpp
    attrs[i] = v.tokenTypes === undefined ? TokenAttr.NORMAL : attrFromTokenType(v.tokenTypes[i]);
    if (t.length > maxTokenLength) maxTokenLength = t.length;
  }
  const scores = v.scores ?? new Float32Array(n);

  // Defaults by model kind, then by pre-tokenizer, then what the metadata says.
  const none: SpecialIds = {
    bos: null, eos: null, eot: null, eom: null, unk: null, sep: null, pad: null, mask: null,
    fimPre: null, fimSuf: null, fimMid: null, fimPad: null, fimRep: null, fimSep: null,
  };
  let ids: SpecialIds;
  let addBos: boolean;
  let addEos = false;
  let addSep = false;
  let addSpacePrefix: boolean;
  let cleanSpaces: boolean;
  let ignoreMerges = false;
  let pre: PreTokenizer | null = null;
  if (kind === 'spm') {
    ids = { ...none, bos: 1, eos: 2, unk: 0 };
    addBos = true;
    addSpacePrefix = true;
    cleanSpaces = false;
  } else if (kind === 'bpe') {
    ids = { ...none, bos: 11, eos: 11 };
    pre = preTokenizerFor(v.pre);
    if (pre.noBos) ids.bos = null;
    addBos = pre.addBos;
    addSpacePrefix = false;
    cleanSpaces = pre.cleanSpaces;
    ignoreMerges = pre.ignoreMerges;
  } else {
    ids = { ...none, bos: 101, unk: 100, sep: 102, pad: 0, mask: 103 };
    addBos = true;
    addSep = true;
    addSpacePrefix = false;
    cleanSpaces = true;
  }
  if (v.addSpacePrefix !== undefined) addSpacePrefix = v.addSpacePrefix;
  if (v.addBos !== undefined) addBos = v.addBos;
  if (v.addEos !== undefined) addEos = v.addEos;

  const given: [keyof SpecialIds, number | undefined][] = [
    ['bos', v.bosId], ['eos', v.eosId], ['eot', v.eotId], ['eom', v.eomId], ['unk', v.unkId], ['sep', v.sepId],
    ['pad', v.padId], ['mask', v.maskId], ['fimPre', v.fimPreId], ['fimSuf', v.fimSufId], ['fimMid', v.fimMidId],
    ['fimPad', v.fimPadId], ['fimRep', v.fimRepId], ['fimSep', v.fimSepId],
  ];
  // An out-of-range id in the metadata is ignored (llama.cpp warns and keeps its default).
  for (const [key, value] of given) if (value !== undefined && Number.isInteger(value) && value >= 0 && value < n) ids[key] = value;
  for (const key of Object.keys(ids) as (keyof SpecialIds)[]) {
    const x = ids[key];
    if (x !== null && (x < 0 || x >= n)) ids[key] = null;
  }

  // Auto-detect end-of-turn and FIM tokens by text; such tokens are forced to CONTROL.
  const forceControl = (id: number): void => {
    if (!(attrs[id] & TokenAttr.CONTROL)) attrs[id] = TokenAttr.CONTROL;
  };
  const detect = (key: keyof SpecialIds, candidates: readonly string[]): void => {
    if (ids[key] !== null) return;
    for (let i = 0; i < n; i++) {
      if (candidates.includes(texts[i]) && textToId.get(texts[i]) === i) {
        ids[key] = i;
        forceControl(i);
        return;
      }
    }
  };
  detect('eot', EOT_TEXTS);
  detect('eom', EOM_TEXTS);
  detect('fimPre', FIM_PRE_TEXTS);
  detect('fimSuf', FIM_SUF_TEXTS);
  detect('fimMid', FIM_MID_TEXTS);
  detect('fimPad', FIM_PAD_TEXTS);
  detect('fimRep', FIM_REP_TEXTS);
  detect('fimSep', FIM_SEP_TEXTS);

  const eog = new Set<number>();
  for (const x of [ids.fimPad, ids.fimRep, ids.fimSep]) if (x !== null) eog.add(x);
  for (const t of EOG_TEXTS) {
    const i = textToId.get(t);
    if (i !== undefined) {
      eog.add(i);
      forceControl(i);
    }
  }
  for (const x of [ids.eos, ids.eot, ids.eom]) if (x !== null) eog.add(x);

  // Special tokens in splitting priority: longest UTF-8 text first, then lowest id.
  const specialIds: number[] = [];
  const mask = TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN;
  for (let i = 0; i < n; i++) if (attrs[i] & mask) specialIds.push(i);
  const byteLen = new Map<number, number>(specialIds.map((i) => [i, utf8Length(texts[i])]));
  specialIds.sort((a, b) => (byteLen.get(b) as number) - (byteLen.get(a) as number) || a - b);

  // Per-model attributes llama.cpp sets by name (they only matter when special tokens are parsed).
  const setAttr = (i: number | undefined, bit: number, on: boolean): void => {
    if (i !== undefined) attrs[i] = on ? attrs[i] | bit : attrs[i] & ~bit;
  };
  const name = (v.name ?? '').toLowerCase();
  const preName = v.pre ?? '';
  if (['jina-v2-de', 'jina-v2-es', 'jina-v2-code'].some((s) => preName.includes(s))) {
    setAttr(textToId.get('<mask>'), TokenAttr.LSTRIP, true);
  } else if (name.includes('phi-3') || name.includes('phi3')) {
    for (const i of specialIds) setAttr(i, TokenAttr.RSTRIP, true);
    setAttr(textToId.get('</s>'), TokenAttr.RSTRIP, true);
    for (const t of ['<unk>', '<s>', '<|endoftext|>']) setAttr(textToId.get(t), TokenAttr.RSTRIP, false);
  }
  const specials: SpecialToken[] = specialIds.map((i) => ({ id: i, text: texts[i], attr: attrs[i] }));

  const byteTokens = new Int32Array(256).fill(-1);
  if (kind === 'spm') {
    for (let b = 0; b < 256; b++) {
      const hex = b.toString(16).toUpperCase().padStart(2, '0');
      const idx = textToId.get(`<0x${hex}>`) ?? (b > 0 && b < 0x80 ? textToId.get(String.fromCharCode(b)) : undefined);
      if (idx !== undefined) byteTokens[b] = idx;
    }
  }

  let mergeRanks: Map<string, number> | null = null;
  if (kind === 'bpe') {
    mergeRanks = new Map();
    const merges = v.merges ?? [];
    for (let r = 0; r < merges.length; r++) {
      const m = merges[r];
      // Split at the first space after the first character, as llama.cpp does.
      const sp = m.indexOf(' ', 1);
      const key = sp < 0 ? ' ' : m;
      if (!mergeRanks.has(key)) mergeRanks.set(key, r);
    }
  }

  let nl: number | null = null;
  if (kind === 'spm') nl = byteTokens[10] >= 0 ? byteTokens[10] : ids.pad;
  else if (kind === 'bpe') nl = textToId.get('\u010a') ?? ids.pad;
  else nl = ids.pad;

  return {
    kind, texts, scores, attrs, textToId, ids, nl, addBos, addEos, addSep, addSpacePrefix, cleanSpaces,
    ignoreMerges, pre, mergeRanks, byteTokens, maxTokenLength, specials, eog,
  };
}

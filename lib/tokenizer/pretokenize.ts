/**
 * BPE pre-tokenizers: split text into words before merging, selected by
 * `tokenizer.ggml.pre` as llama.cpp does.
 *
 * A pre-tokenizer is a list of steps. Each step splits every chunk the
 * previous steps produced into its matches and the gaps between them (both
 * kept), so a later step refines an earlier one. Three step kinds mirror
 * llama.cpp's hand-written splitters (GPT-2, Llama 3, Qwen2); the rest are
 * regular expressions with llama.cpp's notion of `\s` (Unicode White_Space)
 * and of Unicode categories.
 */
import { UnsupportedError } from '../errors';
import { CPT_LETTER, CPT_NUMBER, CPT_WHITESPACE, codePoints, cptFlags, toLowerCp } from './unicode';

/** Splits one chunk, appending the pieces (which concatenate back to the chunk) to `out`. */
export type Splitter = (chunk: string, out: string[]) => void;

export interface PreTokenizer {
  /** The llama.cpp pre-tokenizer family this name resolved to. */
  readonly type: string;
  readonly split: (text: string) => string[];
  /** Flags llama.cpp ties to the pre-tokenizer (metadata can still override add_bos). */
  readonly cleanSpaces: boolean;
  readonly ignoreMerges: boolean;
  readonly addBos: boolean;
  readonly noBos: boolean;
}

const APOS = 0x27;
const SPACE = 0x20;
const CR = 0x0d;
const LF = 0x0a;

/** UTF-16 offset of each code point, plus the end. */
function offsetsOf(cps: number[]): Int32Array {
  const offs = new Int32Array(cps.length + 1);
  for (let i = 0; i < cps.length; i++) offs[i + 1] = offs[i] + (cps[i] > 0xffff ? 2 : 1);
  return offs;
}

function isContractionTail(c1: number, c2: number): 0 | 2 | 3 {
  if (c1 === 0x73 || c1 === 0x74 || c1 === 0x6d || c1 === 0x64) return 2; // 's 't 'm 'd
  if ((c1 === 0x72 && c2 === 0x65) || (c1 === 0x76 && c2 === 0x65) || (c1 === 0x6c && c2 === 0x6c)) return 3; // 're 've 'll
  return 0;
}

/**
 * GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * walked by hand over code points, exactly as llama.cpp's custom splitter does.
 */
export const splitGpt2: Splitter = (chunk, out) => {
  const cps = codePoints(chunk);
  const n = cps.length;
  const offs = offsetsOf(cps);
  const flagsAt = (p: number): number => (p < n ? cptFlags(cps[p]) : 0);
  let start = 0;
  const emit = (end: number): void => {
    if (end > start) out.push(chunk.slice(offs[start], offs[end]));
    start = end;
  };
  let pos = 0;
  while (pos < n) {
    const c = cps[pos];
    if (c === APOS && pos + 1 < n) {
      const k = isContractionTail(cps[pos + 1], pos + 2 < n ? cps[pos + 2] : -1);
      if (k > 0) {
        pos += k;
        emit(pos);
        continue;
      }
    }
    const f2 = c === SPACE ? flagsAt(pos + 1) : flagsAt(pos);
    if (f2 & CPT_LETTER) {
      if (c === SPACE) pos++;
      while (flagsAt(pos) & CPT_LETTER) pos++;
      emit(pos);
      continue;
    }
    if (f2 & CPT_NUMBER) {
      if (c === SPACE) pos++;
      while (flagsAt(pos) & CPT_NUMBER) pos++;
      emit(pos);
      continue;
    }
    if (f2 !== 0 && !(f2 & (CPT_WHITESPACE | CPT_LETTER | CPT_NUMBER))) {
      if (c === SPACE) pos++;
      for (let g = flagsAt(pos); g !== 0 && !(g & (CPT_WHITESPACE | CPT_LETTER | CPT_NUMBER)); g = flagsAt(pos)) pos++;
      emit(pos);
      continue;
    }
    let ws = 0;
    while (flagsAt(pos + ws) & CPT_WHITESPACE) ws++;
    if (ws > 1 && pos + ws < n) {
      // \s+(?!\S): leave the last whitespace to prefix the next word
      pos += ws - 1;
      emit(pos);
      continue;
    }
    pos += ws > 0 ? ws : 1;
    emit(pos);
  }
};

/**
 * Llama 3 (digitGroup 3) and Qwen2 (digitGroup 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,G}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 */
export function makeLlama3Splitter(digitGroup: number): Splitter {
  return (chunk, out) => {
    const cps = codePoints(chunk);
    const n = cps.length;
    const offs = offsetsOf(cps);
    const flagsAt = (p: number): number => (p < n ? cptFlags(cps[p]) : 0);
    let start = 0;
    const emit = (end: number): void => {
      if (end > start) out.push(chunk.slice(offs[start], offs[end]));
      start = end;
    };
    let pos = 0;
    while (pos < n) {
      const c = cps[pos];
      const f = flagsAt(pos);
      if (c === APOS && pos + 1 < n) {
        const k = isContractionTail(toLowerCp(cps[pos + 1]), pos + 2 < n ? toLowerCp(cps[pos + 2]) : -1);
        if (k > 0) {
          pos += k;
          emit(pos);
          continue;
        }
      }
      // [^\r\n\p{L}\p{N}]?\p{L}+
      if (!(c === CR || c === LF || f & CPT_NUMBER) && (f & CPT_LETTER || flagsAt(pos + 1) & CPT_LETTER)) {
        pos++;
        while (flagsAt(pos) & CPT_LETTER) pos++;
        emit(pos);
        continue;
      }
      // \p{N}{1,G}
      if (f & CPT_NUMBER) {
        let groupStart = pos;
        while (flagsAt(pos) & CPT_NUMBER) {
          pos++;
          if (pos - groupStart >= digitGroup) {
            emit(pos);
            groupStart = pos;
          }
        }
        emit(pos);
        continue;
      }
      // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
      const f2 = c === SPACE ? flagsAt(pos + 1) : f;
      if (f !== 0 && !(f2 & (CPT_WHITESPACE | CPT_LETTER | CPT_NUMBER))) {
        if (c === SPACE) pos++;
        for (let g = flagsAt(pos); g !== 0 && !(g & (CPT_WHITESPACE | CPT_LETTER | CPT_NUMBER)); g = flagsAt(pos)) pos++;
        while (pos < n && (cps[pos] === CR || cps[pos] === LF)) pos++;
        emit(pos);
        continue;
      }
      let ws = 0;
      let afterLastNewline = 0;
      while (flagsAt(pos + ws) & CPT_WHITESPACE) {
        const w = cps[pos + ws];
        if (w === CR || w === LF) afterLastNewline = pos + ws + 1;
        ws++;
      }
      if (afterLastNewline > 0) {
        // \s*[\r\n]+
        pos = afterLastNewline;
        emit(pos);
        continue;
      }
      if (ws > 1 && pos + ws < n) {
        pos += ws - 1;
        emit(pos);
        continue;
      }
      pos += ws > 0 ? ws : 1;
      emit(pos);
    }
  };
}

/**
 * A regex step. `\s` and `\S` in `source` mean Unicode White_Space (JS's own
 * `\s` also matches U+FEFF and misses U+0085). Before matching, non-ASCII
 * whitespace in the text is replaced by U+000B — that is what llama.cpp feeds
 * std::regex, and it matters for patterns that list non-ASCII characters
 * (U+3000 is whitespace, not punctuation, to deepseek-llm's pattern).
 */
export function regexSplitter(source: string): Splitter {
  const WS = '\\t-\\r ';
  let translated = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const ch = source[i];
    if (ch === '\\') {
      const nx = source[i + 1];
      if (nx === 's') translated += inClass ? WS : `[${WS}]`;
      else if (nx === 'S') {
        if (inClass) throw new Error('internal: \\S inside a character class');
        translated += `[^${WS}]`;
      } else translated += ch + nx;
      i++;
      continue;
    }
    if (ch === '[' && !inClass) inClass = true;
    else if (ch === ']' && inClass) inClass = false;
    translated += ch;
  }
  const re = new RegExp(translated, 'gu');
  return (chunk, out) => {
    const text = chunk.replace(NON_ASCII_WS, '\u000b');
    let last = 0;
    for (const m of text.matchAll(re)) {
      const at = m.index as number;
      const len = m[0].length;
      if (len === 0) continue;
      if (at > last) out.push(chunk.slice(last, at));
      out.push(chunk.slice(at, at + len));
      last = at + len;
    }
    if (last < chunk.length) out.push(last === 0 ? chunk : chunk.slice(last));
  };
}

const NON_ASCII_WS = /[\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/g;

// The pattern llama.cpp calls the GPT-2 regex (handled by the hand-written splitter).
const GPT2 = 'gpt2';
const LLAMA3 = 'llama3';
const QWEN2 = 'qwen2';

// Step lists per pre-tokenizer family (patterns as in llama.cpp's llm_tokenizer_bpe).
const FAMILIES: Record<string, readonly string[]> = {
  default: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'],
  gpt2: [GPT2],
  llama3: [LLAMA3],
  qwen2: [QWEN2],
  falcon: ['[\\p{P}\\$\\+<=>\\^~\\|`]+', GPT2, '[0-9][0-9][0-9]'],
  starcoder: ['\\p{N}', GPT2],
  'deepseek-llm': [
    '[\\r\\n]',
    '\\s?[A-Za-z\\u00B5\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u01BA\\u01BC-\\u01BF\\u01C4-\\u0293\\u0295-\\u02AF' +
      '\\u0370-\\u0373\\u0376\\u0377\\u037B-\\u037D\\u037F\\u0386\\u0388-\\u038A\\u038C\\u038E-\\u03A1\\u03A3-\\u03F5' +
      '\\u03F7-\\u0481\\u048A-\\u052F\\u0531-\\u0556\\u10A0-\\u10C5\\u13A0-\\u13F5\\u13F8-\\u13FD\\u1C90-\\u1CBA' +
      '\\u1CBD-\\u1CBF\\u1D00-\\u1D2B\\u1D6B-\\u1D77\\u1D79-\\u1D9A\\u1E00-\\u1F15\\u1F18-\\u1F1D\\u1F20-\\u1F45' +
      '\\u1F48-\\u1F4D\\u1F50-\\u1F57\\u1F59\\u1F5B\\u1F5D\\u1F5F-\\u1F7D\\u1F80-\\u1FB4\\u1FB6-\\u1FBC\\u1FBE' +
      '\\u1FC2-\\u1FC4\\u1FC6-\\u1FCC\\u1FD0-\\u1FD3\\u1FD6-\\u1FDB\\u1FE0-\\u1FEC\\u1FF2-\\u1FF4\\u1FF6-\\u1FFC' +
      '\\u2102\\u2107\\u210A-\\u2113\\u2115\\u2119-\\u211D\\u2124\\u2126\\u2128\\u212A-\\u212D\\u212F-\\u2134' +
      '\\u2139\\u213C-\\u213F\\u2145-\\u2149\\u214E\\u2183\\u2184\\u2C00-\\u2C7B\\u2C7E-\\u2CE4\\u2CEB-\\u2CEE' +
      '\\u2CF2\\u2CF3\\uA640-\\uA66D\\uA680-\\uA69B\\uA722-\\uA76F\\uA771-\\uA787\\uA78B-\\uA78E\\uAB70-\\uABBF' +
      '\\uFB00-\\uFB06\\uFB13-\\uFB17\\uFF21-\\uFF3A\\uFF41-\\uFF5A\\u{10400}-\\u{1044F}\\u{104B0}-\\u{104D3}' +
      '\\u{104D8}-\\u{104FB}\\u{10C80}-\\u{10CB2}\\u{10CC0}-\\u{10CF2}\\u{118A0}-\\u{118DF}\\u{1E900}-\\u{1E943}]+',
    '\\s?[!-\\/:-~\\uFF01-\\uFF0F\\uFF1A-\\uFF5E\\u2018-\\u201F\\u3000-\\u3002]+',
    '\\s+$',
    '[\\u4E00-\\u9FA5\\u0800-\\u4E00\\uAC00-\\uD7FF]+',
    '\\p{N}+',
  ],
  'deepseek-coder': ['[\\r\\n]', '\\s?\\p{L}+', '\\s?\\p{P}+', '[\\u4E00-\\u9FA5\\u0800-\\u4E00\\uAC00-\\uD7FF]+', '\\p{N}'],
  'deepseek-v3': [
    '\\p{N}{1,3}',
    '[\\u4E00-\\u9FA5\\u3040-\\u309F\\u30A0-\\u30FF]+',
    '[!"#$%&\'()*+,\\-.\\/:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
  ],
  bloom: [' ?[^(\\s|.,!?\\u2026\\u3002\\uFF0C\\u3001\\u0964\\u06D4\\u060C)]+'],
  viking: [' ?[^(\\s|.,!?\\u2026\\u3002\\uFF0C\\u3001\\u0964\\u06D4\\u060C)]+', '\\p{N}'],
  tekken: [
    '[^\\r\\n\\p{L}\\p{N}]?(?:(?=\\p{L})[^a-z])*(?:(?=\\p{L})[^A-Z])+|[^\\r\\n\\p{L}\\p{N}]?(?:(?=\\p{L})[^a-z])+(?:(?=\\p{L})[^A-Z])*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n\\/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
  ],
  chameleon: [
    '<sentinel:[0-9]+>',
    '(?:IMGIMG)(?:(?:A|B|C|D|E|F|G|H|I){1,4})Z',
    '(?:[\\t\\n]|    |  )',
    '\\p{N}',
    '[\\p{P}!-\\/:-@\\[-`{-~]',
    GPT2,
  ],
};

interface NameInfo {
  family: string;
  cleanSpaces?: boolean;
  ignoreMerges?: boolean;
  addBos?: boolean;
  noBos?: boolean;
}

// tokenizer.ggml.pre -> family and flags, following llama.cpp's vocab loader.
const NAMES: Record<string, NameInfo> = {
  default: { family: 'default' },
  llama3: { family: 'llama3', ignoreMerges: true, addBos: true },
  'llama-v3': { family: 'llama3', ignoreMerges: true, addBos: true },
  'llama-bpe': { family: 'llama3', ignoreMerges: true, addBos: true },
  falcon3: { family: 'llama3', ignoreMerges: true, addBos: true },
  dbrx: { family: 'llama3' },
  'smaug-bpe': { family: 'llama3' },
  'chatglm-bpe': { family: 'llama3', noBos: true },
  'deepseek-llm': { family: 'deepseek-llm', cleanSpaces: false },
  'deepseek-coder': { family: 'deepseek-coder', cleanSpaces: false },
  'deepseek-v3': { family: 'deepseek-v3', cleanSpaces: false },
  falcon: { family: 'falcon' },
  mpt: { family: 'gpt2' },
  olmo: { family: 'gpt2' },
  jais: { family: 'gpt2' },
  'gpt-2': { family: 'gpt2' },
  'phi-2': { family: 'gpt2' },
  'jina-es': { family: 'gpt2' },
  'jina-de': { family: 'gpt2' },
  gigachat: { family: 'gpt2' },
  'jina-v1-en': { family: 'gpt2' },
  'jina-v2-es': { family: 'gpt2' },
  'jina-v2-de': { family: 'gpt2' },
  'jina-v2-code': { family: 'gpt2' },
  'roberta-bpe': { family: 'gpt2' },
  starcoder: { family: 'starcoder' },
  refact: { family: 'starcoder' },
  'command-r': { family: 'starcoder', cleanSpaces: false },
  smollm: { family: 'starcoder', cleanSpaces: false },
  codeshell: { family: 'starcoder' },
  exaone: { family: 'starcoder' },
  'minerva-7b': { family: 'starcoder' },
  qwen2: { family: 'qwen2', cleanSpaces: false },
  'deepseek-r1-qwen': { family: 'qwen2', cleanSpaces: false },
  megrez: { family: 'qwen2' },
  stablelm2: { family: 'qwen2' },
  'poro-chat': { family: 'bloom', cleanSpaces: false },
  bloom: { family: 'bloom' },
  'gpt3-finnish': { family: 'bloom' },
  viking: { family: 'viking', cleanSpaces: false },
  tekken: { family: 'tekken', cleanSpaces: false, ignoreMerges: true, addBos: true },
  chameleon: { family: 'chameleon', cleanSpaces: false, addBos: true },
};

export const SUPPORTED_PRE_TOKENIZERS: readonly string[] = Object.keys(NAMES);

const splitterCache = new Map<string, Splitter[]>();

function stepsOf(family: string): Splitter[] {
  let steps = splitterCache.get(family);
  if (steps === undefined) {
    steps = FAMILIES[family].map((s) =>
      s === GPT2 ? splitGpt2 : s === LLAMA3 ? makeLlama3Splitter(3) : s === QWEN2 ? makeLlama3Splitter(1) : regexSplitter(s),
    );
    splitterCache.set(family, steps);
  }
  return steps;
}

/** Runs the steps over `text`; the concatenation of the result is `text`. */
function runSteps(steps: readonly Splitter[], text: string): string[] {
  if (text.length === 0) return [];
  let chunks = [text];
  for (const step of steps) {
    const next: string[] = [];
    for (const c of chunks) step(c, next);
    chunks = next;
  }
  return chunks;
}

/** The pre-tokenizer for a `tokenizer.ggml.pre` value (absent or empty means 'default'). */
export function preTokenizerFor(pre: string | undefined): PreTokenizer {
  const name = pre === undefined || pre === '' ? 'default' : pre;
  const info = Object.prototype.hasOwnProperty.call(NAMES, name) ? NAMES[name] : undefined;
  if (info === undefined) {
    throw new UnsupportedError(`unknown BPE pre-tokenizer '${name}' (tokenizer.ggml.pre); supported: ${SUPPORTED_PRE_TOKENIZERS.join(', ')}`);
  }
  const steps = stepsOf(info.family);
  return {
    type: info.family,
    split: (text) => runSteps(steps, text),
    cleanSpaces: info.cleanSpaces ?? true,
    ignoreMerges: info.ignoreMerges ?? false,
    addBos: info.addBos ?? false,
    noBos: info.noBos ?? false,
  };
}

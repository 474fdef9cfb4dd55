/**
 * The Tokenizer: text <-> token ids for the three GGUF tokenizer models,
 * reproducing llama.cpp's `llama_tokenize` / `llama_detokenize`.
 */
import { InvalidArgumentError, TokenizerError } from '../errors';
import { GgufMetadata } from '../gguf/types';
import { TokenAttr } from './attrs';
import { byteLevelToBytes } from './byte-level';
import { encodeBpe } from './bpe';
import { cleanUpSpaces } from './clean-spaces';
import { ResolvedVocab, SpecialIds, TokenizerKind, resolveVocab } from './resolve';
import { splitSpecialTokens } from './special';
import { encodeSpm } from './spm';
import { DecodeOptions, PieceSequencer, PieceSource, StreamingDecoder } from './streaming';
import { TokenizerVocab, vocabFromGgufMetadata } from './vocab';
import { encodeWpm } from './wpm';

export interface EncodeOptions {
  /** Add BOS / EOS (and SEP for WordPiece) as the vocabulary's add_bos / add_eos flags say. Default true. */
  addSpecial?: boolean;
  /**
   * Recognise the texts of control tokens (`<s>`, `<|im_end|>` ...) in the
   * input. Default false, so user text cannot inject them. User-defined
   * tokens are always recognised, as in llama.cpp.
   */
  parseSpecial?: boolean;
  /**
   * SentencePiece vocabularies with add_space_prefix: whether the text starts as a text does, with
   * the space prefix. Default true. false: the text continues one that ended in ordinary text (a
   * session's later appends), so that encoding it equals encoding the whole.
   */
  spacePrefix?: boolean;
}

export interface TokenizerDecodeOptions extends DecodeOptions {
  /**
   * Apply llama.cpp's clean-up of spaces before punctuation and contractions
   * (" ," -> ","). Lossy; default false. `tokenizer.cleanSpaces` tells whether
   * llama.cpp would apply it for this vocabulary.
   */
  cleanSpaces?: boolean;
}

const SPACE_ESCAPE = / /g;

export class Tokenizer implements PieceSource {
  private readonly v: ResolvedVocab;
  private readonly pieces: (Uint8Array | undefined)[];
  private readonly renderedPieces: (Uint8Array | undefined)[];
  // Segment (SPM) or word (BPE) -> ids; both are pure functions of the text.
  private readonly wordCache = new Map<string, number[]>();

  constructor(vocab: TokenizerVocab) {
    this.v = resolveVocab(vocab);
    this.pieces = new Array(this.v.texts.length);
    this.renderedPieces = new Array(this.v.texts.length);
  }

  /** Builds a tokenizer from GGUF metadata (`tokenizer.ggml.*`). */
  static fromGgufMetadata(meta: GgufMetadata): Tokenizer {
    return new Tokenizer(vocabFromGgufMetadata(meta));
  }

  /** 'spm' (SentencePiece, model 'llama'), 'bpe' (byte-level, model 'gpt2') or 'wpm' (WordPiece, model 'bert'). */
  get kind(): TokenizerKind {
    return this.v.kind;
  }
  get vocabSize(): number {
    return this.v.texts.length;
  }
  /** The BPE pre-tokenizer family in use ('llama3', 'gpt2', ...), or null. */
  get preTokenizer(): string | null {
    return this.v.pre?.type ?? null;
  }
  get bos(): number | null {
    return this.v.ids.bos;
  }
  get eos(): number | null {
    return this.v.ids.eos;
  }
  get eot(): number | null {
    return this.v.ids.eot;
  }
  get eom(): number | null {
    return this.v.ids.eom;
  }
  get unk(): number | null {
    return this.v.ids.unk;
  }
  get sep(): number | null {
    return this.v.ids.sep;
  }
  get pad(): number | null {
    return this.v.ids.pad;
  }
  get nl(): number | null {
    return this.v.nl;
  }
  /** All special ids, including fill-in-the-middle ones. */
  get specialIds(): Readonly<SpecialIds> {
    return this.v.ids;
  }
  get addBos(): boolean {
    return this.v.addBos;
  }
  get addEos(): boolean {
    return this.v.addEos;
  }
  get addSpacePrefix(): boolean {
    return this.v.addSpacePrefix;
  }
  /** Whether llama.cpp's detokenizer cleans up spaces for this vocabulary (see decode's cleanSpaces). */
  get cleanSpaces(): boolean {
    return this.v.cleanSpaces;
  }

  /** End of generation: EOS, EOT, EOM and the end-of-turn tokens llama.cpp recognises by text. */
  isEog(id: number): boolean {
    return this.v.eog.has(id);
  }
  get eogIds(): number[] {
    return [...this.v.eog].sort((a, b) => a - b);
  }

  /** The raw vocabulary text of a token (e.g. '▁the', 'Ġthe', '<0x0A>'). */
  tokenText(id: number): string {
    return this.v.texts[this.checkId(id)];
  }
  /** Attribute bits of a token (see TokenAttr). */
  tokenAttr(id: number): number {
    return this.v.attrs[this.checkId(id)];
  }
  isControl(id: number): boolean {
    return (this.tokenAttr(id) & TokenAttr.CONTROL) !== 0;
  }

  /** Text ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new InvalidArgumentError('encode expects a string');
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('encode options must be an object');
    const addSpecial = options.addSpecial ?? true;
    const parseSpecial = options.parseSpecial ?? false;
    const v = this.v;
    const fragments = splitSpecialTokens(text, v.specials, parseSpecial);
    const out: number[] = [];
    const addBos = addSpecial && v.addBos;
    if (addBos) out.push(this.required('bos', v.ids.bos));

    if (v.kind === 'spm') {
      // The space prefix goes before the first text (unless it continues one) and after every special token.
      let prevSpecial = options.spacePrefix ?? true;
      for (const f of fragments) {
        if (typeof f === 'number') {
          out.push(f);
          prevSpecial = true;
          continue;
        }
        const raw = v.addSpacePrefix && prevSpecial ? ' ' + f : f;
        encodeSpm(raw.replace(SPACE_ESCAPE, '\u2581'), v, out, this.wordCache);
        prevSpecial = false;
      }
    } else {
      for (const f of fragments) {
        if (typeof f === 'number') out.push(f);
        else if (v.kind === 'bpe') encodeBpe(f, v, out, this.wordCache);
        else encodeWpm(f, v, out);
      }
    }

    if (addSpecial && v.addEos) out.push(this.required('eos', v.ids.eos));
    if (addSpecial && v.addSep && v.kind === 'wpm') out.push(this.required('sep', v.ids.sep));
    return out;
  }

  /** Ids text. Invalid UTF-8 (a sequence cut short) becomes U+FFFD. */
  decode(ids: ArrayLike<number>, options: TokenizerDecodeOptions = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
      throw new InvalidArgumentError('decode expects an array of token ids');
    }
    const seq = new PieceSequencer(this, options);
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const b = seq.next(ids[i]);
      if (b.length > 0) {
        parts.push(b);
        total += b.length;
      }
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
    return options.cleanSpaces ? cleanUpSpaces(text) : text;
  }

  /** A decoder for ids arriving one at a time (see StreamingDecoder). */
  createStreamingDecoder(options: DecodeOptions = {}): StreamingDecoder {
    return new StreamingDecoder(this, options);
  }

  /**
   * The text of one token. Control tokens show their text unless
   * renderSpecial is false; a byte token that is part of a multi-byte
   * character shows as U+FFFD (use tokenBytes for the byte).
   */
  tokenToPiece(id: number, options: { renderSpecial?: boolean } = {}): string {
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(this.pieceBytes(this.checkId(id), options.renderSpecial ?? true));
  }

  /** The bytes one token contributes to decoded text (renderSpecial default false, as in decode). */
  tokenBytes(id: number, options: { renderSpecial?: boolean } = {}): Uint8Array {
    return this.pieceBytes(this.checkId(id), options.renderSpecial ?? false).slice();
  }

  /** @internal Cached piece bytes for a valid id; callers must not mutate them. */
  pieceBytes(id: number, render: boolean): Uint8Array {
    const cache = render ? this.renderedPieces : this.pieces;
    let p = cache[id];
    if (p === undefined) {
      p = this.computePiece(id, render);
      cache[id] = p;
    }
    return p;
  }

  private computePiece(id: number, render: boolean): Uint8Array {
    const v = this.v;
    const attr = v.attrs[id];
    const text = v.texts[id];
    const special = TokenAttr.CONTROL | TokenAttr.UNKNOWN;
    if (attr & special && !render) return EMPTY;
    if (attr & (special | TokenAttr.USER_DEFINED)) return ENCODER.encode(text);
    if (v.kind === 'bpe') return attr & TokenAttr.NORMAL ? byteLevelToBytes(text, ENCODER) : EMPTY;
    if (attr & TokenAttr.NORMAL) return ENCODER.encode(text.replace(/\u2581/g, ' '));
    if (attr & TokenAttr.BYTE) {
      // "<0xNN>"; anything else marked BYTE is taken as its text
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
      return m ? Uint8Array.of(parseInt(m[1], 16)) : ENCODER.encode(text);
    }
    return EMPTY; // unused / undefined tokens render as nothing
  }

  private checkId(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.v.texts.length) {
      throw new InvalidArgumentError(`token id ${String(id)} is out of range [0, ${this.v.texts.length})`);
    }
    return id;
  }

  private required(what: string, id: number | null): number {
    if (id === null) throw new TokenizerError(`the vocabulary asks for a ${what.toUpperCase()} token but defines none`);
    return id;
  }
}

const EMPTY = new Uint8Array(0);
const ENCODER = new TextEncoder();

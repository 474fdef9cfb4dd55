/**
 * Detokenization, whole or one token at a time.
 *
 * A token's piece is a run of bytes, not necessarily whole characters: SPM
 * byte tokens (<0xNN>) and byte-level BPE tokens can carry a fragment of a
 * multi-byte UTF-8 character. The StreamingDecoder keeps such a fragment
 * until the rest arrives, so it never emits half a character, and what it
 * emits over a sequence concatenates to exactly what `decode` returns.
 */
import { InvalidArgumentError } from '../errors';

export interface DecodeOptions {
  /** Render control and unknown tokens (`<s>`, `<|im_end|>`) as their text. Default false: they vanish. */
  renderSpecial?: boolean;
  /**
   * Drop the one space that SentencePiece's space prefix put in front of the
   * first word (after a leading BOS, if any). Default true; only vocabularies
   * with add_space_prefix are affected. Set false to continue a stream whose
   * first tokens were decoded elsewhere.
   */
  stripLeadingSpace?: boolean;
}

/** What the decoders need from a tokenizer. */
export interface PieceSource {
  readonly vocabSize: number;
  readonly bos: number | null;
  readonly addSpacePrefix: boolean;
  /** The bytes of one token's piece (shared; never mutated by the caller). */
  pieceBytes(id: number, renderSpecial: boolean): Uint8Array;
}

/** Turns ids into piece bytes, applying the leading-space rule. Shared by decode() and StreamingDecoder. */
export class PieceSequencer {
  private stripPending: boolean;
  private started = false;
  private readonly renderSpecial: boolean;

  constructor(private readonly source: PieceSource, options: DecodeOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('decode options must be an object');
    this.renderSpecial = options.renderSpecial ?? false;
    this.stripPending = (options.stripLeadingSpace ?? true) && source.addSpacePrefix;
  }

  next(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.source.vocabSize) {
      throw new InvalidArgumentError(`token id ${String(id)} is out of range [0, ${this.source.vocabSize})`);
    }
    const bytes = this.source.pieceBytes(id, this.renderSpecial);
    if (this.stripPending) {
      const leadingBos = !this.started && id === this.source.bos;
      this.started = true;
      if (leadingBos) return bytes;
      this.stripPending = false;
      if (bytes.length > 0 && bytes[0] === 0x20) return bytes.subarray(1);
    }
    this.started = true;
    return bytes;
  }
}

export class StreamingDecoder {
  private sequencer: PieceSequencer;
  // ignoreBOM: a U+FEFF at the start is text, not a byte-order mark to swallow.
  private decoder = new TextDecoder('utf-8', { ignoreBOM: true });

  constructor(private readonly source: PieceSource, private readonly options: DecodeOptions = {}) {
    this.sequencer = new PieceSequencer(source, options);
  }

  /** Adds one token; returns the text it completes (possibly ''). */
  push(id: number): string {
    return this.decoder.decode(this.sequencer.next(id), { stream: true });
  }

  /** Ends the stream: returns what is held back (an incomplete character becomes U+FFFD) and resets. */
  flush(): string {
    const rest = this.decoder.decode();
    this.reset();
    return rest;
  }

  /** Starts a new sequence, discarding anything held back. */
  reset(): void {
    this.sequencer = new PieceSequencer(this.source, this.options);
    this.decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  }
}

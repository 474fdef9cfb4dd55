import type { StreamingDecoder, Tokenizer } from '../tokenizer';
import type { ResolvedGenerateOptions } from './options';
import type { GeneratedPiece, GenerateResult } from './session';
import { StopStringFilter } from './stop-strings';

/**
 * Turns one generate() call's sampled tokens into pieces of text: detokenization, stop strings and
 * stop tokens. The caller makes a token that is not a stop token pending before handing it out.
 */
export class PieceEmitter {
  produced = 0;

  private readonly decoder: StreamingDecoder;
  private readonly stops: StopStringFilter;

  /**
   * stripLeadingSpace: drop the SentencePiece space prefix of the first word (the stream holds
   * nothing but a BOS). `joined` is called for every token that joins the stream (not for stop tokens).
   */
  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly o: ResolvedGenerateOptions,
    stripLeadingSpace: boolean,
    private readonly joined: (token: number) => void,
  ) {
    this.decoder = tokenizer.createStreamingDecoder({ stripLeadingSpace });
    this.stops = new StopStringFilter(o.stop);
  }

  /** End-of-generation ids and the call's stopTokens end generation without joining the stream. */
  isStop(token: number): boolean {
    return this.tokenizer.isEog(token) || this.o.stopTokens.has(token);
  }

  /** Yields what `token` completes; returns the result when generation ends with it, else null. */
  *handOut(token: number): Generator<GeneratedPiece, GenerateResult | null, undefined> {
    const { decoder, stops } = this;
    if (this.isStop(token)) {
      const r = stops.push(decoder.flush());
      const text = r.stopped ? r.text : r.text + stops.flush();
      if (text.length > 0) yield { token, text };
      return { reason: r.stopped ? 'stopString' : 'stopToken', tokens: this.produced };
    }
    this.joined(token);
    this.produced++;
    const last = this.produced >= this.o.maxTokens;
    const r = stops.push(decoder.push(token) + (last ? decoder.flush() : ''));
    if (r.stopped) {
      yield { token, text: r.text };
      return { reason: 'stopString', tokens: this.produced };
    }
    yield { token, text: last ? r.text + stops.flush() : r.text };
    return null;
  }
}

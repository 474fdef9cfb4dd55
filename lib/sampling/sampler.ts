import { InvalidArgumentError } from '../errors';
import type { NativeSampleToken, NativeSamplingParams } from '../native/types';
import { Prng, randomSeed } from './prng';
import {
  applyLogitBias,
  applyMinP,
  applyPenalties,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  sampleFromLogits,
} from './transforms';

export interface SamplingOptions {
  /** 0 = greedy (argmax). Default 0.8. */
  temperature?: number;
  /** Keep the k most likely ids; 0 = off. Default 40. */
  topK?: number;
  /** Nucleus: keep the most likely ids up to this cumulative probability; 1 = off. Default 0.95. */
  topP?: number;
  /** Keep ids with probability >= minP × the best one's; 0 = off. Default 0.05. */
  minP?: number;
  /** Default 1 (off). */
  repeatPenalty?: number;
  /** Default 0 (off). */
  presencePenalty?: number;
  /** Default 0 (off). */
  frequencyPenalty?: number;
  /** How many of the most recent tokens the penalties look at. Default 64; at most MAX_PENALTY_WINDOW. */
  penaltyLastN?: number;
  /** Seed of the sampler's PRNG; the same seed, options and logits give the same tokens. Default: random. */
  seed?: number;
  /** Added to the logits of the given ids before sampling; -Infinity bans an id. */
  logitBias?: Record<number, number> | ReadonlyMap<number, number>;
}

/** The largest penaltyLastN a session keeps history for. */
export const MAX_PENALTY_WINDOW = 8192;

export interface ResolvedSamplingOptions {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  penaltyLastN: number;
  seed: number;
  logitBias: ReadonlyMap<number, number>;
}

function fail(message: string): never {
  throw new InvalidArgumentError(message);
}

function num(value: unknown, name: string, fallback: number, ok: (v: number) => boolean, range: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value) || !ok(value)) fail(`${name} must be ${range}, got ${String(value)}`);
  return value;
}

/**
 * Checks sampling options (InvalidArgumentError naming the option) and fills in the defaults.
 * `nVocab`, when given, bounds the ids of logitBias.
 */
export function resolveSamplingOptions(options: SamplingOptions = {}, nVocab?: number): ResolvedSamplingOptions {
  if (options === null || typeof options !== 'object') fail('sampling options must be an object');
  const finite = (v: number) => Number.isFinite(v);
  const int = (v: number) => Number.isSafeInteger(v);
  const bias = new Map<number, number>();
  if (options.logitBias !== undefined) {
    const lb = options.logitBias;
    if (lb === null || typeof lb !== 'object') fail('logitBias must be an object or a Map of token id → bias');
    const entries: [unknown, unknown][] = lb instanceof Map ? [...lb.entries()] : Object.entries(lb);
    for (const [key, value] of entries) {
      const id = typeof key === 'number' ? key : Number(key);
      if (!Number.isInteger(id) || id < 0 || (nVocab !== undefined && id >= nVocab))
        fail(`logitBias key ${String(key)} is not a token id${nVocab !== undefined ? ` in [0, ${nVocab})` : ''}`);
      if (typeof value !== 'number' || Number.isNaN(value) || value === Infinity)
        fail(`logitBias[${id}] must be a finite number or -Infinity, got ${String(value)}`);
      bias.set(id, value);
    }
  }
  return {
    temperature: num(options.temperature, 'temperature', 0.8, (v) => finite(v) && v >= 0, 'a finite number >= 0'),
    topK: num(options.topK, 'topK', 40, (v) => int(v) && v >= 0, 'an integer >= 0 (0 = off)'),
    topP: num(options.topP, 'topP', 0.95, (v) => v > 0 && v <= 1, 'in (0, 1]'),
    minP: num(options.minP, 'minP', 0.05, (v) => v >= 0 && v <= 1, 'in [0, 1]'),
    repeatPenalty: num(options.repeatPenalty, 'repeatPenalty', 1, (v) => finite(v) && v > 0, 'a finite number > 0'),
    presencePenalty: num(options.presencePenalty, 'presencePenalty', 0, finite, 'a finite number'),
    frequencyPenalty: num(options.frequencyPenalty, 'frequencyPenalty', 0, finite, 'a finite number'),
    penaltyLastN: num(options.penaltyLastN, 'penaltyLastN', 64, (v) => int(v) && v >= 0 && v <= MAX_PENALTY_WINDOW, `an integer in [0, ${MAX_PENALTY_WINDOW}]`),
    seed: num(options.seed, 'seed', randomSeed(), finite, 'a finite number'),
    logitBias: bias,
  };
}

/**
 * Picks the next token from a row of logits. The steps, in order:
 * penalties over the last penaltyLastN tokens → logit bias → (temperature 0: argmax) →
 * temperature → top-k → top-p → min-p → draw with the seeded PRNG.
 * Temperature is applied before the filters, so top-p and min-p see the tempered distribution.
 */
export class Sampler {
  readonly options: ResolvedSamplingOptions;
  private readonly rng: Prng;
  private readonly native: NativeSampleToken | null;
  private params: NativeSamplingParams | null = null;

  /**
   * `native` (internal): the addon's copy of this procedure, which gives the same ids and PRNG
   * stream (test/sampling/native-sampler.test.ts) at a fraction of the cost on large vocabularies;
   * rows it declines (NaN or infinite logits) are sampled here.
   */
  constructor(options: SamplingOptions = {}, nVocab?: number, native?: NativeSampleToken) {
    this.options = resolveSamplingOptions(options, nVocab);
    this.rng = new Prng(this.options.seed);
    this.native = native ?? null;
  }

  /** @internal The PRNG's state (a decode run continues the stream natively and hands it back). */
  get rngState(): Uint32Array {
    return this.rng.getState();
  }

  set rngState(state: Uint32Array) {
    this.rng.setState(state);
  }

  /** @internal These options as the native sampler takes them. */
  nativeParams(): NativeSamplingParams {
    const o = this.options;
    const ids = [...o.logitBias.keys()];
    return {
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      minP: o.minP,
      repeatPenalty: o.repeatPenalty,
      presencePenalty: o.presencePenalty,
      frequencyPenalty: o.frequencyPenalty,
      penaltyLastN: o.penaltyLastN,
      biasIds: Int32Array.from(ids),
      biasValues: Float64Array.from(ids, (id) => o.logitBias.get(id)!),
    };
  }

  /** `recent`: the stream's latest tokens, oldest first (only the last penaltyLastN are looked at). */
  sample(logits: Float32Array, recent: ArrayLike<number> = []): number {
    if (this.native !== null) {
      const n = Math.min(this.options.penaltyLastN, recent.length);
      const window = new Int32Array(n);
      for (let k = 0; k < n; k++) window[k] = recent[recent.length - n + k];
      this.params ??= this.nativeParams();
      const r = this.native({ logits, sampling: this.params, rngState: this.rng.getState(), recent: window });
      if (r.token >= 0) {
        this.rng.setState(r.rngState);
        return r.token;
      }
    }
    const o = this.options;
    const n = Math.min(o.penaltyLastN, recent.length);
    const window = n === 0 ? [] : Array.prototype.slice.call(recent, recent.length - n) as number[];
    let l = applyPenalties(logits, window, o);
    if (o.logitBias.size > 0) l = applyLogitBias(l, o.logitBias);
    if (o.temperature === 0) {
      const best = argmax(l);
      if (best < 0) fail('every logit is -Infinity or NaN: no token can be chosen');
      return best;
    }
    l = applyTemperature(l, o.temperature);
    if (o.topK > 0) l = applyTopK(l, o.topK);
    if (o.topP < 1) l = applyTopP(l, o.topP);
    if (o.minP > 0) l = applyMinP(l, o.minP);
    return sampleFromLogits(l, this.rng.next());
  }
}

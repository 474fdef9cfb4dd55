/**
 * Pure functions over one row of logits (Float32Array, one entry per vocabulary id).
 * None of them modifies its input; filters return a copy in which removed ids are -Infinity.
 *
 * Ordering, where it matters: ids are ranked by logit, highest first, ties broken by the lower id.
 * "Probabilities" are softmax(logits) computed in double precision.
 */
import { InvalidArgumentError } from '../errors';

/** Index of the largest logit; the lowest such id on ties. -1 for an empty row or one that is all NaN / -Infinity. */
export function argmax(logits: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/** softmax(logits) in double precision; -Infinity becomes 0. Throws when no logit is finite (nothing to sample). */
export function softmax(logits: Float32Array): Float64Array {
  const max = maxFinite(logits);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = logits[i] === -Infinity ? 0 : Math.exp(logits[i] - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** log(sum(exp(logits))) in double precision (the log-partition of the row). */
export function logSumExp(logits: Float32Array): number {
  const max = maxFinite(logits);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] !== -Infinity) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/** Negative log-likelihood of `id` under softmax(logits), in nats. */
export function negativeLogLikelihood(logits: Float32Array, id: number): number {
  if (!Number.isInteger(id) || id < 0 || id >= logits.length) throw new InvalidArgumentError(`token id ${id} is outside the vocabulary [0, ${logits.length})`);
  return logSumExp(logits) - logits[id];
}

function maxFinite(logits: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (Number.isNaN(v)) throw new InvalidArgumentError(`logit ${i} is NaN`);
    if (v === Infinity) throw new InvalidArgumentError(`logit ${i} is +Infinity`);
    if (v > max) max = v;
  }
  if (max === -Infinity) throw new InvalidArgumentError('every logit is -Infinity: no token can be sampled');
  return max;
}

/** logits / temperature (temperature > 0). */
export function applyTemperature(logits: Float32Array, temperature: number): Float32Array {
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new InvalidArgumentError(`temperature must be a finite number > 0, got ${temperature}`);
  const out = new Float32Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] / temperature;
  return out;
}

/**
 * The `count` best ids of the row, best first (logit descending, lower id on ties), among those
 * that are not -Infinity.
 */
export function rankedIds(logits: Float32Array, count = logits.length): Int32Array {
  const ids: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] !== -Infinity) ids.push(i);
  if (count < ids.length) {
    // Narrow to the candidates at or above the count-th largest value before the comparison sort.
    const values = Float32Array.from(ids, (i) => logits[i]).sort();
    const threshold = values[values.length - count];
    let w = 0;
    for (const id of ids) if (logits[id] >= threshold) ids[w++] = id;
    ids.length = w;
  }
  ids.sort((x, y) => logits[y] - logits[x] || x - y);
  return Int32Array.from(ids.slice(0, count));
}

function keepOnly(logits: Float32Array, keep: ArrayLike<number>): Float32Array {
  const out = new Float32Array(logits.length).fill(-Infinity);
  for (let k = 0; k < keep.length; k++) out[keep[k]] = logits[keep[k]];
  return out;
}

/** Keeps the k highest logits (k >= 1; lower id wins a tie at the boundary). */
export function applyTopK(logits: Float32Array, k: number): Float32Array {
  if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`topK must be an integer >= 1, got ${k}`);
  if (k >= logits.length) return logits.slice();
  return keepOnly(logits, rankedIds(logits, k));
}

/**
 * Nucleus filter: keeps the shortest prefix of the ranked ids whose probabilities sum to at least p
 * (0 < p <= 1); always keeps at least the best id.
 */
export function applyTopP(logits: Float32Array, p: number): Float32Array {
  if (!(p > 0 && p <= 1)) throw new InvalidArgumentError(`topP must be in (0, 1], got ${p}`);
  if (p === 1) return logits.slice();
  const probs = softmax(logits);
  const ranked = rankedIds(logits);
  let cumulative = 0;
  let n = 0;
  while (n < ranked.length) {
    cumulative += probs[ranked[n]];
    n++;
    if (cumulative >= p) break;
  }
  return keepOnly(logits, ranked.subarray(0, n));
}

/** Keeps the ids whose probability is at least p times the best one's (0 <= p <= 1). */
export function applyMinP(logits: Float32Array, p: number): Float32Array {
  if (!(p >= 0 && p <= 1)) throw new InvalidArgumentError(`minP must be in [0, 1], got ${p}`);
  if (p === 0) return logits.slice();
  const probs = softmax(logits);
  let best = 0;
  for (let i = 0; i < probs.length; i++) if (probs[i] > best) best = probs[i];
  const out = logits.slice();
  for (let i = 0; i < out.length; i++) if (probs[i] < p * best) out[i] = -Infinity;
  return out;
}

export interface PenaltyOptions {
  /** Divides positive logits and multiplies negative ones of every id seen in the window; 1 = off. */
  repeatPenalty?: number;
  /** Subtracted once from the logit of every id seen in the window; 0 = off. */
  presencePenalty?: number;
  /** Subtracted from the logit of every id once per occurrence in the window; 0 = off. */
  frequencyPenalty?: number;
}

/**
 * Repetition, presence and frequency penalties (the llama.cpp / OpenAI definitions) for the ids in
 * `window` (the recent tokens; the caller chooses how many). For an id seen c > 0 times:
 * `l' = (l > 0 ? l / repeat : l * repeat) - c * frequency - presence`.
 */
export function applyPenalties(logits: Float32Array, window: ArrayLike<number>, options: PenaltyOptions): Float32Array {
  const repeat = options.repeatPenalty ?? 1;
  const presence = options.presencePenalty ?? 0;
  const frequency = options.frequencyPenalty ?? 0;
  const out = logits.slice();
  if (window.length === 0 || (repeat === 1 && presence === 0 && frequency === 0)) return out;
  const counts = new Map<number, number>();
  for (let k = 0; k < window.length; k++) {
    const id = window[k];
    if (id >= 0 && id < logits.length) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  for (const [id, c] of counts) {
    let l = out[id];
    if (l === -Infinity) continue;
    l = l > 0 ? l / repeat : l * repeat;
    out[id] = l - c * frequency - presence;
  }
  return out;
}

/** Adds `bias[id]` to the logit of each listed id (-Infinity bans an id). */
export function applyLogitBias(logits: Float32Array, bias: ReadonlyMap<number, number>): Float32Array {
  const out = logits.slice();
  for (const [id, b] of bias) {
    if (!Number.isInteger(id) || id < 0 || id >= logits.length) throw new InvalidArgumentError(`logitBias names token ${id}, outside the vocabulary [0, ${logits.length})`);
    out[id] += b;
  }
  return out;
}

/**
 * Draws an id from softmax(logits) with the uniform variate u in [0, 1): the first id (in id order)
 * at which the cumulative probability exceeds u. Ids at -Infinity are never drawn.
 */
export function sampleFromLogits(logits: Float32Array, u: number): number {
  if (!(u >= 0 && u < 1)) throw new InvalidArgumentError(`u must be in [0, 1), got ${u}`);
  const probs = softmax(logits);
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  return last; // rounding left the total a hair under u
}

/** Comparing log-probabilities of the reference with llama.cpp's. */
import { logSoftmax } from '../reference/forward';
import { Rng } from '../helpers/random';

export interface Gap {
  /** max over positions and vocabulary of |Δ log p|. */
  max: number;
  rms: number;
  /** max |Δ log p| of each position. */
  perPosition: number[];
  /** Largest logit spread (max - min log p) of any position: agreement on flat rows would prove little. */
  spread: number;
}

export function logProbGap(referenceLogits: Float64Array[], oracle: Float32Array[]): Gap {
  if (referenceLogits.length !== oracle.length) throw new Error(`${referenceLogits.length} reference rows vs ${oracle.length} oracle rows`);
  let max = 0;
  let sumSq = 0;
  let n = 0;
  let spread = 0;
  const perPosition = referenceLogits.map((logits, p) => {
    const ref = logSoftmax(logits);
    const got = oracle[p];
    if (got.length !== ref.length) throw new Error(`vocabulary ${ref.length} vs ${got.length}`);
    let m = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < ref.length; j++) {
      const d = Math.abs(ref[j] - got[j]);
      m = Math.max(m, Number.isNaN(d) ? Infinity : d);
      sumSq += d * d;
      n++;
      lo = Math.min(lo, ref[j]);
      hi = Math.max(hi, ref[j]);
    }
    spread = Math.max(spread, hi - lo);
    max = Math.max(max, m);
    return m;
  });
  return { max, rms: Math.sqrt(sumSq / n), perPosition, spread };
}

/** Share of positions whose max |Δ log p| is at most `tol`. */
export function shareWithin(gap: Gap, tol: number): number {
  return gap.perPosition.filter((x) => x <= tol).length / gap.perPosition.length;
}

/** BOS then n - 1 seeded random ids from the stories260K vocabulary's non-special range. */
export function randomTokens(n: number, seed: number): number[] {
  const rng = new Rng(seed);
  return [1, ...Array.from({ length: n - 1 }, () => rng.int(3, 511))];
}

export const fmt = (x: number): string => x.toExponential(1);

/**
 * A plain, dense reference of DESIGN.md §1, written separately from the native kernel and used
 * only by tests: every (query, head, key) gets its branch from classify(), its logit from explicitly
 * rotated vectors in double precision, and one ordinary softmax over the kept keys.
 */
import { classify, globalDistance, type LambdaMask } from '../../lib/attention/rule';

export interface ReferenceProblem {
  nHead: number;
  nHeadKV: number;
  headDim: number;
  q: ArrayLike<number>; // [nQ][nHead][headDim]
  k: ArrayLike<number>; // [nSlot][nHeadKV][headDim] as floats (f16 already widened)
  v: ArrayLike<number>;
  slotPos: number[]; // -1: empty
  qPos: number[];
  scale: number;
  encoding:
    | { kind: 'rope'; thetaBase: number; freqScale: number; rotaryDim: number; pairing: 'normal' | 'neox' }
    | { kind: 'alibi'; slopes: ArrayLike<number> }
    | { kind: 'none' };
  mask: LambdaMask;
  topK: { k: number; insertAt: number };
}

/** R(p) x: rotate the first rotaryDim dimensions of x by the RoPE angles of distance p. */
export function rotate(x: number[], p: number, enc: Extract<ReferenceProblem['encoding'], { kind: 'rope' }>): number[] {
  const out = x.slice();
  const half = enc.rotaryDim / 2;
  for (let pair = 0; pair < half; pair++) {
    const theta = p * enc.freqScale * Math.pow(enc.thetaBase, (-2 * pair) / enc.rotaryDim);
    const [a, b] = enc.pairing === 'normal' ? [2 * pair, 2 * pair + 1] : [pair, pair + half];
    const c = Math.cos(theta);
    const s = Math.sin(theta);
    out[a] = x[a] * c - x[b] * s;
    out[b] = x[a] * s + x[b] * c;
  }
  return out;
}

function dot(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function referenceAttention(p: ReferenceProblem): Float64Array {
  const nQ = p.qPos.length;
  const { nHead, nHeadKV, headDim } = p;
  const group = nHead / nHeadKV;
  const out = new Float64Array(nQ * nHead * headDim);
  const row = (a: ArrayLike<number>, offset: number) => Array.from({ length: headDim }, (_, d) => a[offset + d]);

  for (let qi = 0; qi < nQ; qi++) {
    const i = p.qPos[qi];
    for (let h = 0; h < nHead; h++) {
      const kvh = Math.floor(h / group);
      const q = row(p.q, (qi * nHead + h) * headDim);
      const kept: { logit: number; slot: number }[] = [];
      const middle: { logit: number; slot: number }[] = [];
      for (let s = 0; s < p.slotPos.length; s++) {
        const j = p.slotPos[s];
        if (j < 0) continue;
        const branch = classify(i, j, p.mask);
        if (branch === 'masked') continue;
        const k = row(p.k, (s * nHeadKV + kvh) * headDim);
        const distance = branch === 'local' ? i - j : branch === 'global' ? globalDistance(i, p.mask) : p.topK.insertAt;
        let logit: number;
        if (p.encoding.kind === 'rope') {
          // Local: <R(i) q, R(j) k>; global: <R(L) q, k>; middle: <R(insertAt) q, k>.
          logit = branch === 'local' ? dot(rotate(q, i, p.encoding), rotate(k, j, p.encoding)) : dot(rotate(q, distance, p.encoding), k);
          logit *= p.scale;
        } else {
          logit = dot(q, k) * p.scale;
          if (p.encoding.kind === 'alibi') logit -= p.encoding.slopes[h] * distance;
        }
        if (branch === 'middle') middle.push({ logit, slot: s });
        else kept.push({ logit, slot: s });
      }
      if (p.topK.k > 0) {
        middle.sort((a, b) => b.logit - a.logit);
        kept.push(...middle.slice(0, p.topK.k));
      }
      if (kept.length === 0) continue;
      const max = Math.max(...kept.map((e) => e.logit));
      let sum = 0;
      const weights = kept.map((e) => {
        const w = Math.exp(e.logit - max);
        sum += w;
        return w;
      });
      const base = (qi * nHead + h) * headDim;
      kept.forEach((e, n) => {
        const vOff = (e.slot * nHeadKV + kvh) * headDim;
        for (let d = 0; d < headDim; d++) out[base + d] += (weights[n] / sum) * p.v[vOff + d];
      });
    }
  }
  return out;
}

/**
 * A plain forward pass of the llama, qwen2, gptneox and mpt architectures as llama.cpp defines them,
 * in double precision, for tests. Attention goes through test/reference/attention-reference.ts, so
 * the Λ rule (DESIGN.md §1) is the one the kernel tests use; everything else is written out here:
 *
 *   x = tok_embd[t] (+ pos_embd[p], mpt)
 *   per layer:  h = norm(x)                     RMSNorm (llama, qwen2) / LayerNorm w+b (gptneox, mpt)
 *               q, k, v = W h + b               separate (llama, qwen2) or fused [q | k | v] rows
 *               a = Wo attention(q, k, v) + bo  RoPE inside attention; ALiBi slopes for mpt
 *               sequential: x += a; x += ffn(norm(x))
 *               parallel (gptneox flag): x += a + ffn(norm(x_in))
 *               ffn: down(silu(gate h) * up h)  (llama, qwen2)  |  down(gelu(up h + b)) + b  (gptneox, mpt)
 *   logits = output * norm(x)
 *
 * K/V are kept for every token seen (no eviction: the mask decides what each query sees), so a state
 * can be fed a sequence in one call or in pieces with identical results.
 */
import { GgmlType, type GgufFile } from '../../../lib/gguf';
import type { LambdaMask } from '../../../lib/attention/rule';
import { floatToHalfBits, halfBitsToFloat } from '../../../lib/util/half';
import { referenceAttention, rotate, type ReferenceProblem } from '../attention-reference';
import { dequantize, QK, quantize } from './blocks';
import { ggmlCpuGelu, roundActivations } from './ggml-cpu';
import { loadWeights, readHparams, type Matrix, type ReferenceHparams, type ReferenceWeights } from './model';

export interface ReferenceLambdaOptions {
  /** Default 10. */
  nGlobal?: number;
  /** Default: the model's context length. */
  nLocal?: number;
  /** Default: the model's context length. */
  limitDistance?: number;
  /** Top-k middle attention; `true` = the DESIGN defaults (k 5, from layer 4, insertAt nLocal/2). Default off. */
  topK?: boolean | { k?: number; fromLayer?: number; insertAt?: number };
}

export interface ReferenceForwardOptions {
  /** Default 'vanilla' (plain causal over everything); 'lambda' = Λ with the DESIGN defaults. */
  attention?: 'vanilla' | 'lambda' | ReferenceLambdaOptions;
  /** Absolute position of the first token of the stream (the mask's origin). Default 0. */
  startPosition?: number;
  /**
   * 'f16': round K (unrotated) and V to binary16 before attention, like an f16 cache of unrotated
   * keys; 'q8_0': round each token's K and V row through Q8_0 blocks (ggml's reference rounding;
   * headDim a multiple of 32). Default 'f32' (no rounding).
   */
  kvType?: 'f32' | 'f16' | 'q8_0';
  /**
   * RoPE models: round each K row as a cache of keys turned by R(position mod keyTurnPeriod) holds
   * it (the engine's CPU cache: 64), turning it back in exact math after the rounding. Only the
   * rounding changes (with kvType 'f32' nothing does). Default 0: the rounding of un-turned keys.
   */
  keyTurnPeriod?: number;
  /**
   * Add the roundings of ggml's CPU backend (ggml-cpu.ts: quantized matmul activations, f16-table
   * GELU) to the exact math, to compare with llama.cpp tightly. Default false: exact math.
   */
  emulateGgmlCpu?: boolean;
  /** With emulateGgmlCpu: F16 weights' activations rounded to f16 (ggml-cpu.ts). Default false. */
  ggmlF16Activations?: boolean;
}

/** Fully resolved attention settings of one stream. */
export interface ResolvedAttention {
  mask: LambdaMask;
  topK: { k: number; fromLayer: number; insertAt: number };
}

export interface ReferenceState {
  readonly attention: ResolvedAttention;
  readonly kvType: 'f32' | 'f16' | 'q8_0';
  readonly keyTurnPeriod: number;
  readonly emulateGgmlCpu: boolean;
  readonly ggmlF16Activations: boolean;
  /** Absolute position of every token fed so far. */
  readonly positions: number[];
  /** Per layer: K and V rows [token][nHeadKV][headDim], unrotated. */
  readonly k: number[][];
  readonly v: number[][];
}

// ---------------------------------------------------------------------------------------------
// Blocks

/**
 * y = W x (+ b), accumulated in double; with `emulate`, x as ggml's CPU matmul rounds it for W's type
 * (`f16Activations`: see roundActivations).
 */
function matVec(m: Matrix, input: ArrayLike<number>, b?: ArrayLike<number>, emulate = false, f16Activations = false): Float64Array {
  const rounded = emulate ? roundActivations(m.type, input, f16Activations) : undefined;
  const x = rounded ? rounded.x : input;
  const corr = rounded?.blockSumCorrection;
  const y = new Float64Array(m.rows);
  for (let r = 0; r < m.rows; r++) {
    let s = 0;
    const base = r * m.cols;
    for (let c = 0; c < m.cols; c++) s += m.w[base + c] * x[c];
    if (corr && m.mins) for (let k = 0; k < corr.length; k++) s += m.mins[(r * m.cols) / QK + k] * corr[k];
    y[r] = b ? s + b[r] : s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * scale * w[i]);
}

function layerNorm(x: Float64Array, w: Float64Array, b: Float64Array | undefined, eps: number): Float64Array {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) * (v - mean);
  variance /= x.length;
  const scale = 1 / Math.sqrt(variance + eps);
  return x.map((v, i) => (v - mean) * scale * w[i] + (b ? b[i] : 0));
}

const silu = (x: number) => x / (1 + Math.exp(-x));
/** ggml_gelu: the tanh approximation. */
const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

/** ALiBi slope of each head, as ggml's soft_max derives them from max_bias (any head count). */
export function alibiSlopes(nHead: number, maxBias: number): Float64Array {
  const nHeadLog2 = 2 ** Math.floor(Math.log2(nHead));
  const m0 = 2 ** (-maxBias / nHeadLog2);
  const m1 = 2 ** (-(maxBias / 2) / nHeadLog2);
  return Float64Array.from({ length: nHead }, (_, h) => (h < nHeadLog2 ? m0 ** (h + 1) : m1 ** (2 * (h - nHeadLog2) + 1)));
}

const roundHalf = (x: number) => halfBitsToFloat(floatToHalfBits(x));

// ---------------------------------------------------------------------------------------------
// The model

export class ReferenceModel {
  readonly hparams: ReferenceHparams;
  readonly weights: ReferenceWeights;
  private readonly slopes?: Float64Array;

  constructor(gguf: GgufFile, bytes: Uint8Array) {
    this.hparams = readHparams(gguf);
    this.weights = loadWeights(gguf, bytes, this.hparams);
    if (this.hparams.positional === 'alibi') this.slopes = alibiSlopes(this.hparams.nHead, this.hparams.alibiBiasMax);
  }

  resolveAttention(opts: ReferenceForwardOptions = {}): ResolvedAttention {
    const origin = opts.startPosition ?? 0;
    const a = opts.attention ?? 'vanilla';
    const ctx = this.hparams.contextLength;
    if (a === 'vanilla') {
      return { mask: { lambda: false, origin, nGlobal: 0, nLocal: ctx, limitDistance: ctx }, topK: { k: 0, fromLayer: 0, insertAt: 0 } };
    }
    const o = a === 'lambda' ? {} : a;
    const nLocal = o.nLocal ?? ctx;
    const mask: LambdaMask = { lambda: true, origin, nGlobal: o.nGlobal ?? 10, nLocal, limitDistance: o.limitDistance ?? ctx };
    const t = o.topK === true ? {} : o.topK === false || o.topK === undefined ? undefined : o.topK;
    const topK = t
      ? { k: t.k ?? 5, fromLayer: t.fromLayer ?? 4, insertAt: t.insertAt ?? Math.floor(nLocal / 2) }
      : { k: 0, fromLayer: 0, insertAt: 0 };
    return { mask, topK };
  }

  createState(opts: ReferenceForwardOptions = {}): ReferenceState {
    return {
      attention: this.resolveAttention(opts),
      kvType: opts.kvType ?? 'f32',
      keyTurnPeriod: opts.keyTurnPeriod ?? 0,
      emulateGgmlCpu: opts.emulateGgmlCpu ?? false,
      ggmlF16Activations: opts.ggmlF16Activations ?? false,
      positions: [],
      k: Array.from({ length: this.hparams.nLayer }, () => []),
      v: Array.from({ length: this.hparams.nLayer }, () => []),
    };
  }

  /** Feeds `tokens` at the next positions of the stream; returns their logits [token][nVocab]. */
  eval(state: ReferenceState, tokens: readonly number[]): Float64Array[] {
    const hp = this.hparams;
    const W = this.weights;
    const { nEmbd, nHead, nHeadKV, headDim } = hp;
    const nQ = nHead * headDim;
    const nKV = nHeadKV * headDim;
    const first = state.positions.length === 0 ? state.attention.mask.origin : state.positions[state.positions.length - 1] + 1;
    const pos = tokens.map((_, i) => first + i);
    const mv = (m: Matrix, x: ArrayLike<number>, b?: ArrayLike<number>) => matVec(m, x, b, state.emulateGgmlCpu, state.ggmlF16Activations);
    const norm = (x: Float64Array, w: Float64Array, b?: Float64Array) =>
      hp.arch === 'llama' || hp.arch === 'qwen2' ? rmsNorm(x, w, hp.normEps) : layerNorm(x, w, b, hp.normEps);

    const rope =
      hp.positional === 'rope'
        ? { kind: 'rope' as const, thetaBase: hp.ropeTheta, freqScale: hp.ropeFreqScale, rotaryDim: hp.rotaryDim, pairing: hp.ropePairing }
        : undefined;
    const roundRow = (x: number[]): number[] =>
      state.kvType === 'q8_0'
        ? Array.from(dequantize(GgmlType.Q8_0, quantize(GgmlType.Q8_0, Float64Array.from(x)), x.length))
        : state.kvType === 'f16' ? x.map(roundHalf) : x;
    // The K row of the token at position p as the cache holds it: rounded; when keys are stored
    // turned, turned by R(p mod M) before the rounding and back (exactly) after it.
    const storeKey = (row: ArrayLike<number>, p: number): number[] => {
      const t = rope && state.keyTurnPeriod > 0 ? p % state.keyTurnPeriod : 0;
      const out: number[] = [];
      for (let g = 0; g < nHeadKV; g++) {
        const head = Array.from(row).slice(g * headDim, (g + 1) * headDim);
        out.push(...(t === 0 ? roundRow(head) : rotate(roundRow(rotate(head, t, rope!)), -t, rope!)));
      }
      return out;
    };

    let xs: Float64Array[] = tokens.map((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= hp.nVocab) throw new Error(`token ${t} is outside the vocabulary`);
      const x = W.tokEmbd.w.slice(t * nEmbd, (t + 1) * nEmbd);
      if (W.posEmbd) {
        const p = pos[i] - state.attention.mask.origin;
        if (p >= W.posEmbd.rows) throw new Error(`position ${p} is past the learned position embeddings (${W.posEmbd.rows})`);
        for (let c = 0; c < nEmbd; c++) x[c] += W.posEmbd.w[p * nEmbd + c];
      }
      return x;
    });

    for (let l = 0; l < hp.nLayer; l++) {
      const L = W.layers[l];
      const hs = xs.map((x) => norm(x, L.attnNorm, L.attnNormB));

      // Projections: q [nHead][headDim], k and v [nHeadKV][headDim] per token.
      const q: number[] = [];
      for (const [i, h] of hs.entries()) {
        let qi: Float64Array, ki: Float64Array, vi: Float64Array;
        if (L.wqkv) {
          const qkv = mv(L.wqkv, h, L.bqkv);
          if (hp.clampKQV > 0) for (let r = 0; r < qkv.length; r++) qkv[r] = Math.min(hp.clampKQV, Math.max(-hp.clampKQV, qkv[r]));
          qi = qkv.subarray(0, nQ);
          ki = qkv.subarray(nQ, nQ + nKV);
          vi = qkv.subarray(nQ + nKV, nQ + 2 * nKV);
        } else {
          qi = mv(L.wq!, h, L.bq);
          ki = mv(L.wk!, h, L.bk);
          vi = mv(L.wv!, h, L.bv);
        }
        const round = state.kvType === 'f16' ? roundHalf : (x: number) => x;
        const blocks = (row: Float64Array) => dequantize(GgmlType.Q8_0, quantize(GgmlType.Q8_0, row), row.length);
        q.push(...qi);
        for (const x of storeKey(ki, pos[i])) state.k[l].push(x);
        for (const x of state.kvType === 'q8_0' ? blocks(vi) : vi) state.v[l].push(round(x));
      }

      const slotPos = [...state.positions, ...pos];
      const topK = state.attention.topK.k > 0 && l >= state.attention.topK.fromLayer ? state.attention.topK : { k: 0, insertAt: 0 };
      const encoding: ReferenceProblem['encoding'] =
        rope
          ? rope
          : hp.positional === 'alibi'
            ? { kind: 'alibi', slopes: this.slopes! }
            : { kind: 'none' };
      const attn = referenceAttention({
        nHead,
        nHeadKV,
        headDim,
        q,
        k: state.k[l],
        v: state.v[l],
        slotPos,
        qPos: pos,
        scale: 1 / Math.sqrt(headDim),
        encoding,
        mask: state.attention.mask,
        topK: { k: topK.k, insertAt: topK.insertAt },
      });

      const ffn = (x: Float64Array): Float64Array => {
        const h = norm(x, L.ffnNorm, L.ffnNormB);
        const up = mv(L.ffnUp, h, L.ffnUpB);
        let act: Float64Array;
        if (L.ffnGate) {
          const gate = mv(L.ffnGate, h);
          act = gate.map((g, i) => silu(g) * up[i]);
        } else {
          act = up.map(state.emulateGgmlCpu ? (u) => ggmlCpuGelu(u, gelu) : gelu);
        }
        return mv(L.ffnDown, act, L.ffnDownB);
      };

      xs = xs.map((x, i) => {
        const a = mv(L.wo, attn.subarray(i * nQ, (i + 1) * nQ), L.bo);
        if (hp.parallelResidual) {
          const f = ffn(x);
          return x.map((v, c) => v + a[c] + f[c]);
        }
        const mid = x.map((v, c) => v + a[c]);
        const f = ffn(mid);
        return mid.map((v, c) => v + f[c]);
      });
    }
    state.positions.push(...pos);
    return xs.map((x) => mv(W.output, norm(x, W.outputNorm, W.outputNormB)));
  }

  /** Logits at every position of `tokens`, fed from an empty stream in one piece. */
  forward(tokens: readonly number[], opts: ReferenceForwardOptions = {}): Float64Array[] {
    return this.eval(this.createState(opts), tokens);
  }

  /** Greedy continuation: `n` ids, each the argmax (lowest id on ties) of the previous logits. */
  greedy(tokens: readonly number[], n: number, opts: ReferenceForwardOptions = {}): number[] {
    const state = this.createState(opts);
    let logits = this.eval(state, tokens);
    const out: number[] = [];
    for (let s = 0; s < n; s++) {
      const next = argmax(logits[logits.length - 1]);
      out.push(next);
      if (s + 1 < n) logits = this.eval(state, [next]);
    }
    return out;
  }
}

/** Logits at every position of `tokens` (full-sequence causal, one pass). */
export function referenceForward(
  gguf: GgufFile,
  bytes: Uint8Array,
  tokens: readonly number[],
  opts: ReferenceForwardOptions = {},
): Float64Array[] {
  return new ReferenceModel(gguf, bytes).forward(tokens, opts);
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** log softmax of one row of logits. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - lse);
}

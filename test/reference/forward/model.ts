/**
 * The reference's view of a GGUF model: hyperparameters read from the metadata as llama.cpp reads
 * them, and every weight dequantized into a Float64Array. Written for clarity, not speed.
 */
import {
  GgmlType,
  getBool,
  getInteger,
  getNumber,
  getString,
  getStringArray,
  requireInteger,
  requireNumber,
  requireString,
  type GgufFile,
} from '../../../lib/gguf';
import { blockMins, dequantize } from './blocks';

export type ReferenceArch = 'llama' | 'qwen2' | 'gptneox' | 'mpt';

export interface ReferenceHparams {
  arch: ReferenceArch;
  nVocab: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKV: number;
  headDim: number;
  nFF: number;
  /** RMSNorm epsilon (llama, qwen2) or LayerNorm epsilon (gptneox, mpt). */
  normEps: number;
  contextLength: number;
  /** 'rope': llama, qwen2, gptneox; 'alibi': mpt with max_alibi_bias > 0; 'none': mpt without. */
  positional: 'rope' | 'alibi' | 'none';
  ropeTheta: number;
  /** Position multiplier (1 / linear scaling factor). */
  ropeFreqScale: number;
  rotaryDim: number;
  /** llama: adjacent pairs (2i, 2i+1); qwen2, gptneox: halves (i, i + rotaryDim/2). */
  ropePairing: 'normal' | 'neox';
  parallelResidual: boolean;
  alibiBiasMax: number;
  /** Clamp of the fused QKV output to [-c, c]; 0 = none (mpt). */
  clampKQV: number;
}

/** A weight matrix: `rows` output rows of `cols` inputs each (GGUF dims [cols, rows]). */
export interface Matrix {
  rows: number;
  cols: number;
  w: Float64Array; // [rows][cols]
  /** How the file stores it (decides what ggml's CPU matmul does to the activations). */
  type: GgmlType;
  /** Q4_1 / Q5_1: each block's minimum [rows][cols/32] (only the ggml-CPU emulation uses it). */
  mins?: Float64Array;
}

export interface LayerWeights {
  attnNorm: Float64Array; // [nEmbd]
  attnNormB?: Float64Array; // [nEmbd]
  /** Separate projections (llama, qwen2): [nHead*headDim | nHeadKV*headDim][nEmbd]. */
  wq?: Matrix;
  wk?: Matrix;
  wv?: Matrix;
  bq?: Float64Array;
  bk?: Float64Array;
  bv?: Float64Array;
  /**
   * Fused projection (gptneox, mpt): rows [all q | all k | all v], each head-major, as llama.cpp's
   * graphs slice it (views at 0, nQ, nQ + nKV). For GPT-NeoX this is not the Hugging Face layout
   * (per head [q k v]): llama.cpp's converter reorders the rows into this one.
   */
  wqkv?: Matrix; // [nEmbd + 2*nHeadKV*headDim][nEmbd]
  bqkv?: Float64Array;
  wo: Matrix; // [nEmbd][nHead*headDim]
  bo?: Float64Array;
  ffnNorm: Float64Array;
  ffnNormB?: Float64Array;
  ffnGate?: Matrix; // [nFF][nEmbd] (llama, qwen2)
  ffnUp: Matrix; // [nFF][nEmbd]
  ffnUpB?: Float64Array;
  ffnDown: Matrix; // [nEmbd][nFF]
  ffnDownB?: Float64Array;
}

export interface ReferenceWeights {
  tokEmbd: Matrix; // [nVocab][nEmbd]
  posEmbd?: Matrix; // [contextLength][nEmbd] (mpt, optional)
  layers: LayerWeights[];
  outputNorm: Float64Array;
  outputNormB?: Float64Array;
  /** output.weight, or the token embedding when the file has none (tied classifier). */
  output: Matrix; // [nVocab][nEmbd]
}

const ARCHES: readonly ReferenceArch[] = ['llama', 'qwen2', 'gptneox', 'mpt'];

export function readHparams(gguf: GgufFile): ReferenceHparams {
  const meta = gguf.metadata;
  const arch = requireString(meta, 'general.architecture');
  if (!(ARCHES as readonly string[]).includes(arch)) throw new Error(`architecture ${arch} is unsupported in reference`);
  const a = arch as ReferenceArch;
  const key = (k: string) => `${a}.${k}`;
  const nEmbd = requireInteger(meta, key('embedding_length'));
  const nHead = requireInteger(meta, key('attention.head_count'));
  const headDim = getInteger(meta, key('attention.key_length')) ?? nEmbd / nHead;
  const tokens = getStringArray(meta, 'tokenizer.ggml.tokens');
  const embd = gguf.tensors.find((t) => t.name === 'token_embd.weight');
  const nVocab = tokens?.length ?? embd?.dims[1] ?? requireInteger(meta, key('vocab_size'));

  // Linear RoPE scaling: the newer rope.scaling.{type,factor} keys, or the older rope.scale_linear.
  let ropeFreqScale = 1;
  const scalingType = getString(meta, key('rope.scaling.type'));
  const factor = getNumber(meta, key('rope.scaling.factor')) ?? getNumber(meta, key('rope.scale_linear'));
  if (scalingType !== undefined && scalingType !== 'none' && scalingType !== 'linear') {
    throw new Error(`rope scaling ${scalingType} is unsupported in reference`);
  }
  if (scalingType !== 'none' && factor !== undefined && factor > 0) ropeFreqScale = 1 / factor;

  const alibiBiasMax = a === 'mpt' ? getNumber(meta, key('attention.max_alibi_bias')) ?? 0 : 0;
  const rmsNorm = a === 'llama' || a === 'qwen2';
  return {
    arch: a,
    nVocab,
    nEmbd,
    nLayer: requireInteger(meta, key('block_count')),
    nHead,
    nHeadKV: getInteger(meta, key('attention.head_count_kv')) ?? nHead,
    headDim,
    nFF: requireInteger(meta, key('feed_forward_length')),
    normEps: requireNumber(meta, key(rmsNorm ? 'attention.layer_norm_rms_epsilon' : 'attention.layer_norm_epsilon')),
    contextLength: requireInteger(meta, key('context_length')),
    positional: a === 'mpt' ? (alibiBiasMax > 0 ? 'alibi' : 'none') : 'rope',
    ropeTheta: getNumber(meta, key('rope.freq_base')) ?? 10000,
    ropeFreqScale,
    rotaryDim: getInteger(meta, key('rope.dimension_count')) ?? headDim,
    ropePairing: a === 'llama' ? 'normal' : 'neox',
    parallelResidual: a === 'gptneox' ? getBool(meta, key('use_parallel_residual')) ?? true : false,
    alibiBiasMax,
    clampKQV: a === 'mpt' ? getNumber(meta, key('attention.clamp_kqv')) ?? 0 : 0,
  };
}

/** All of a tensor's values, dequantized; undefined when the file lacks it. */
export function tensorValues(
  gguf: GgufFile,
  bytes: Uint8Array,
  name: string,
): { dims: number[]; type: GgmlType; values: Float64Array; mins?: Float64Array } | undefined {
  const t = gguf.tensors.find((x) => x.name === name);
  if (t === undefined) return undefined;
  if (t.offset + t.byteLength > bytes.length) throw new Error(`tensor ${name} lies past the end of the given bytes`);
  const n = t.dims.reduce((p, d) => p * d, 1);
  const data = bytes.subarray(t.offset, t.offset + t.byteLength);
  const values = Float64Array.from(dequantize(t.type, data, n));
  const mins = t.type === GgmlType.Q4_1 || t.type === GgmlType.Q5_1 ? Float64Array.from(blockMins(t.type, data, n)) : undefined;
  return { dims: t.dims, type: t.type, values, mins };
}

export function loadWeights(gguf: GgufFile, bytes: Uint8Array, hp: ReferenceHparams): ReferenceWeights {
  const get = (name: string, dims: number[]) => {
    const t = tensorValues(gguf, bytes, name);
    if (t === undefined) return undefined;
    const want = dims.join(',');
    if (t.dims.join(',') !== want) throw new Error(`tensor ${name} has dims [${t.dims}], expected [${want}]`);
    return t;
  };
  const opt = (name: string, dims: number[]): Float64Array | undefined => get(name, dims)?.values;
  const req = (name: string, dims: number[]): Float64Array => {
    const v = opt(name, dims);
    if (v === undefined) throw new Error(`tensor ${name} is missing`);
    return v;
  };
  const optMat = (name: string, cols: number, rows: number): Matrix | undefined => {
    const t = get(name, [cols, rows]);
    return t && { rows, cols, w: t.values, type: t.type, mins: t.mins };
  };
  const reqMat = (name: string, cols: number, rows: number): Matrix => {
    const m = optMat(name, cols, rows);
    if (m === undefined) throw new Error(`tensor ${name} is missing`);
    return m;
  };

  const { nEmbd, nFF, nVocab, nHead, nHeadKV, headDim } = hp;
  const nQ = nHead * headDim;
  const nKV = nHeadKV * headDim;
  const fused = hp.arch === 'gptneox' || hp.arch === 'mpt';
  for (const unsupported of ['attn_q_norm', 'attn_k_norm', 'ffn_act']) {
    if (gguf.tensors.some((t) => t.name.startsWith('blk.') && t.name.includes(`.${unsupported}.`))) {
      throw new Error(`${unsupported} tensors are unsupported in reference`);
    }
  }

  const layers: LayerWeights[] = [];
  for (let l = 0; l < hp.nLayer; l++) {
    const n = (s: string) => `blk.${l}.${s}`;
    const layer: LayerWeights = {
      attnNorm: req(n('attn_norm.weight'), [nEmbd]),
      attnNormB: opt(n('attn_norm.bias'), [nEmbd]),
      wo: reqMat(n('attn_output.weight'), nQ, nEmbd),
      bo: opt(n('attn_output.bias'), [nEmbd]),
      ffnNorm: req(n('ffn_norm.weight'), [nEmbd]),
      ffnNormB: opt(n('ffn_norm.bias'), [nEmbd]),
      ffnGate: optMat(n('ffn_gate.weight'), nEmbd, nFF),
      ffnUp: reqMat(n('ffn_up.weight'), nEmbd, nFF),
      ffnUpB: opt(n('ffn_up.bias'), [nFF]),
      ffnDown: reqMat(n('ffn_down.weight'), nFF, nEmbd),
      ffnDownB: opt(n('ffn_down.bias'), [nEmbd]),
    };
    if (fused) {
      layer.wqkv = reqMat(n('attn_qkv.weight'), nEmbd, nQ + 2 * nKV);
      layer.bqkv = opt(n('attn_qkv.bias'), [nQ + 2 * nKV]);
    } else {
      layer.wq = reqMat(n('attn_q.weight'), nEmbd, nQ);
      layer.wk = reqMat(n('attn_k.weight'), nEmbd, nKV);
      layer.wv = reqMat(n('attn_v.weight'), nEmbd, nKV);
      layer.bq = opt(n('attn_q.bias'), [nQ]);
      layer.bk = opt(n('attn_k.bias'), [nKV]);
      layer.bv = opt(n('attn_v.bias'), [nKV]);
    }
    if ((hp.arch === 'llama' || hp.arch === 'qwen2') && layer.ffnGate === undefined) {
      throw new Error(`tensor ${n('ffn_gate.weight')} is missing`);
    }
    layers.push(layer);
  }
  const tokEmbd = reqMat('token_embd.weight', nEmbd, nVocab);
  return {
    tokEmbd,
    posEmbd: hp.arch === 'mpt' ? optMat('position_embd.weight', nEmbd, hp.contextLength) : undefined,
    layers,
    outputNorm: req('output_norm.weight', [nEmbd]),
    outputNormB: opt('output_norm.bias', [nEmbd]),
    output: optMat('output.weight', nEmbd, nVocab) ?? tokEmbd,
  };
}

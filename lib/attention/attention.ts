import { InvalidArgumentError } from '../errors';
import { callNative, loadAddon } from '../native/addon';
import type { NativeAttentionArgs } from '../native/types';

export type PositionEncoding =
  | {
      kind: 'rope';
      /** RoPE frequency base (`<arch>.rope.freq_base`), default 10000. */
      thetaBase?: number;
      /** Multiplies positions (`1 / rope scaling factor`), default 1. */
      freqScale?: number;
      /** Rotated leading dimensions, even, ≤ headDim; default headDim. */
      rotaryDim?: number;
      /** 'normal' rotates (x[2k], x[2k+1]); 'neox' rotates (x[k], x[k + rotaryDim/2]). Default 'normal'. */
      pairing?: 'normal' | 'neox';
    }
  | { kind: 'alibi'; /** One slope per query head. */ slopes: Float32Array | number[] }
  | { kind: 'none' };

export interface LambdaOptions {
  nLocal: number;
  /** Default 10. */
  nGlobal?: number;
  /** Default nLocal. */
  limitDistance?: number;
  /** Absolute position of the stream's first token, default 0. */
  origin?: number;
  /** Top-k middle attention: keep the k largest middle logits, attended at distance insertAt. */
  topK?: { k: number; insertAt: number };
}

export interface AttentionInput {
  /** [nQ][nHead][headDim], un-rotated. */
  q: Float32Array;
  /** [nSlot][nHeadKV][headDim], un-rotated; Uint16Array means IEEE half storage. */
  k: Float32Array | Uint16Array;
  v: Float32Array | Uint16Array;
  nHead: number;
  nHeadKV: number;
  headDim: number;
  /** Absolute position of every slot (-1: empty slot). Integers; BigInt64Array for exactness beyond 2^53. */
  slotPositions: BigInt64Array | Float64Array | ArrayLike<number>;
  /** Absolute position of every query. */
  queryPositions: BigInt64Array | Float64Array | ArrayLike<number>;
  encoding: PositionEncoding;
  /** 'vanilla' for plain causal attention, or the Λ mask's parameters. */
  attention: 'vanilla' | LambdaOptions;
  /** Logit scale, default 1/sqrt(headDim). */
  scale?: number;
  /** Worker threads, default 1. */
  threads?: number;
  /** Use the portable kernel even where AVX2/FMA is available (for tests). */
  forcePortable?: boolean;
  /** Keep to the AVX2 decode tiles even where the CPU has AVX-512 (for tests and A/B runs). */
  noAvx512?: boolean;
}

function fail(message: string): never {
  throw new InvalidArgumentError(message);
}

function positiveInt(value: unknown, name: string, max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max)
    fail(`${name} must be an integer in [1, ${max}], got ${String(value)}`);
  return value;
}

function nonNegativeInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    fail(`${name} must be a non-negative integer, got ${String(value)}`);
  return value;
}

function finitePositive(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    fail(`${name} must be a finite number > 0, got ${String(value)}`);
  return value;
}

function toPositions(value: unknown, name: string, allowEmpty: boolean): BigInt64Array {
  if (value instanceof BigInt64Array) {
    for (let i = 0; i < value.length; i++) {
      if (value[i] < (allowEmpty ? -1n : 0n)) fail(`${name}[${i}] is ${value[i]}; positions must be >= 0${allowEmpty ? ' (or -1 for an empty slot)' : ''}`);
    }
    return value;
  }
  if (value === null || typeof value !== 'object' || typeof (value as ArrayLike<number>).length !== 'number')
    fail(`${name} must be a BigInt64Array, Float64Array or array of integers`);
  const src = value as ArrayLike<unknown>;
  const out = new BigInt64Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const p = src[i];
    if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < (allowEmpty ? -1 : 0))
      fail(`${name}[${i}] is ${String(p)}; positions must be integers >= 0${allowEmpty ? ' (or -1 for an empty slot)' : ''}`);
    out[i] = BigInt(p);
  }
  return out;
}

/** Checks the input and turns it into the addon's argument object; every problem is an InvalidArgumentError. */
export function toNativeAttentionArgs(input: AttentionInput): NativeAttentionArgs {
  if (input === null || typeof input !== 'object') fail('attention input must be an object');
  const nHead = positiveInt(input.nHead, 'nHead', 4096);
  const nHeadKV = positiveInt(input.nHeadKV, 'nHeadKV', 4096);
  const headDim = positiveInt(input.headDim, 'headDim', 4096);
  if (nHead % nHeadKV !== 0) fail(`nHead (${nHead}) must be a multiple of nHeadKV (${nHeadKV})`);

  if (!(input.q instanceof Float32Array)) fail('q must be a Float32Array');
  const kvType = input.k instanceof Float32Array ? 'f32' : input.k instanceof Uint16Array ? 'f16' : undefined;
  if (!kvType) fail('k must be a Float32Array (f32) or a Uint16Array (f16 bits)');
  if (input.v?.constructor !== input.k.constructor) fail(`v must be a ${input.k.constructor.name} like k`);

  const rowQ = nHead * headDim;
  if (input.q.length === 0 || input.q.length % rowQ !== 0)
    fail(`q has ${input.q.length} elements, not a positive multiple of nHead*headDim = ${rowQ}`);
  const nQ = input.q.length / rowQ;
  const rowKV = nHeadKV * headDim;
  if (input.k.length % rowKV !== 0) fail(`k has ${input.k.length} elements, not a multiple of nHeadKV*headDim = ${rowKV}`);
  const nSlot = input.k.length / rowKV;
  if (input.v.length !== input.k.length) fail(`v has ${input.v.length} elements, k has ${input.k.length}`);

  const slotPos = toPositions(input.slotPositions, 'slotPositions', true);
  const qPos = toPositions(input.queryPositions, 'queryPositions', false);
  if (slotPos.length !== nSlot) fail(`slotPositions has ${slotPos.length} entries, k holds ${nSlot} slots`);
  if (qPos.length !== nQ) fail(`queryPositions has ${qPos.length} entries, q holds ${nQ} queries`);

  const scale = input.scale === undefined ? 1 / Math.sqrt(headDim) : finitePositive(input.scale, 'scale');
  const threads = input.threads === undefined ? 1 : positiveInt(input.threads, 'threads', 1024);

  const enc = input.encoding;
  let encoding: NativeAttentionArgs['encoding'];
  if (enc?.kind === 'rope') {
    const rotaryDim = enc.rotaryDim === undefined ? headDim : nonNegativeInt(enc.rotaryDim, 'encoding.rotaryDim');
    if (rotaryDim % 2 !== 0 || rotaryDim > headDim) fail(`encoding.rotaryDim must be even and <= headDim (${headDim}), got ${rotaryDim}`);
    const pairing = enc.pairing ?? 'normal';
    if (pairing !== 'normal' && pairing !== 'neox') fail(`encoding.pairing must be 'normal' or 'neox', got ${String(pairing)}`);
    encoding = {
      kind: 'rope',
      thetaBase: enc.thetaBase === undefined ? 10000 : finitePositive(enc.thetaBase, 'encoding.thetaBase'),
      freqScale: enc.freqScale === undefined ? 1 : finitePositive(enc.freqScale, 'encoding.freqScale'),
      rotaryDim,
      pairing,
    };
  } else if (enc?.kind === 'alibi') {
    const slopes = Float32Array.from(enc.slopes ?? []);
    if (slopes.length !== nHead) fail(`encoding.slopes needs ${nHead} entries (one per query head), got ${slopes.length}`);
    if (!slopes.every(Number.isFinite)) fail('encoding.slopes must be finite');
    encoding = { kind: 'alibi', slopes };
  } else if (enc?.kind === 'none') {
    encoding = { kind: 'none' };
  } else {
    fail(`encoding.kind must be 'rope', 'alibi' or 'none'`);
  }

  let mask: NativeAttentionArgs['mask'];
  let topK: NativeAttentionArgs['topK'] = { k: 0, insertAt: 0 };
  const att = input.attention;
  if (att === 'vanilla') {
    mask = { lambda: false, origin: 0, nGlobal: 0, nLocal: 1, limitDistance: 0 };
  } else if (att !== null && typeof att === 'object') {
    const nLocal = positiveInt(att.nLocal, 'attention.nLocal', Number.MAX_SAFE_INTEGER);
    mask = {
      lambda: true,
      nLocal,
      nGlobal: att.nGlobal === undefined ? 10 : nonNegativeInt(att.nGlobal, 'attention.nGlobal'),
      limitDistance: att.limitDistance === undefined ? nLocal : nonNegativeInt(att.limitDistance, 'attention.limitDistance'),
      origin: att.origin === undefined ? 0 : nonNegativeInt(att.origin, 'attention.origin'),
    };
    if (att.topK !== undefined) {
      if (att.topK === null || typeof att.topK !== 'object') fail('attention.topK must be { k, insertAt }');
      topK = { k: nonNegativeInt(att.topK.k, 'attention.topK.k'), insertAt: nonNegativeInt(att.topK.insertAt, 'attention.topK.insertAt') };
    }
  } else {
    fail(`attention must be 'vanilla' or { nLocal, nGlobal?, limitDistance?, origin?, topK? }`);
  }

  return {
    nQ, nHead, nHeadKV, headDim, nSlot, kvType,
    q: input.q, k: input.k, v: input.v,
    slotPos, qPos, scale, encoding, mask, topK, threads,
    forcePortable: input.forcePortable === true,
    noAvx512: input.noAvx512 === true,
  };
}

/**
 * LM-Infinite attention of a batch of queries against K/V slots (DESIGN.md §1), computed by the
 * native kernel off the event loop. Resolves with the output [nQ][nHead][headDim].
 * The input arrays must not be modified until the promise settles.
 */
export async function attention(input: AttentionInput): Promise<Float32Array> {
  const args = toNativeAttentionArgs(input);
  const addon = await loadAddon();
  return callNative(() => addon.attention(args));
}

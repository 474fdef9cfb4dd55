/**
 * Fuzzing the native load path. Two layers, one fixed seed each, bounded in time and memory:
 *
 * 1. Mutated model files (the stories260K and passkey-tiny fixtures; small synthetic gptneox, mpt
 *    and Q4_K llama models) through the package's loadModel(path): lib/gguf reads them, lib/model
 *    derives the hyperparameters and the tokenizer, native maps and checks the tensors. Mutations
 *    aim past the reader's first checks: metadata values the hyperparameters come from (head
 *    counts, dims, context length, RoPE dims, epsilon, base), tokenizer arrays, types and ids, the
 *    tensor table (dims, n_dims, types, offsets, names), inflated counts and lengths, bit flips in
 *    header and data, truncations.
 * 2. Hostile specs (from the same models) straight into the addon's loadModel(spec), past every
 *    TypeScript check: dims inconsistent with byteLength, offsets past EOF or unaligned, nHead 0,
 *    nHeadKV not dividing nHead, huge nVocab / nEmbd with tensors "consistent" with them, unknown
 *    type numbers, NaN and negative values, values of the wrong JS type, getters that throw,
 *    missing and duplicated tensors, other paths.
 *
 * Every case must end in a typed error (an LmiError from the package, or an error whose `code` is
 * one of lib/errors.ts' codes from the addon) or a model; a model is then run (a 4-token eval)
 * and disposed, and the eval too must compute or fail typed (weights corrupted into NaN / Inf give
 * non-finite logits, which score() refuses with INVALID_ARGUMENT). Never a crash (that kills the jest
 * worker), a hang (time budget), or memory growth past MEMORY_BUDGET.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { LmiError, type LmiErrorCode } from '../../lib/errors';
import { GgmlType } from '../../lib/gguf';
import { loadModel } from '../../lib/model';
import { fromNativeError, loadAddon } from '../../lib/native/addon';
import type { NativeAddon, NativeModelSpec, NativeTensorSpec } from '../../lib/native/types';
import { fixturePath, mapFields, PASSKEY, readFixture, STORIES, type Field } from '../gguf/helpers';
import { quantizeModel } from '../helpers/quantized-models';
import { Rng } from '../helpers/random';
import { makeSyntheticModel } from '../helpers/synthetic-models';
import { SlotTable, specFromGguf, vanillaMask } from './spec-from-gguf';

const SEED_FILES = 0x5eed0001;
const SEED_SPECS = 0x5eed0002;
const FILE_CASES = 3_000;
const SPEC_CASES = 9_000;
/**
 * Per layer: the run fails if it takes longer. Measured: files ~4 ms a case on an idle core
 * (~15 ms with the machine's two cores shared by five jobs), specs ~0.5 ms. A hang shows as the
 * slowest case.
 */
const TIME_BUDGET_MS = 80_000;
const SLOWEST_CASE_MS = 5_000;
/** Resident memory may not grow past this over the run, nor peak past it (VmHWM, where Linux has it). */
const MEMORY_BUDGET = 1024 * 2 ** 20;
const GC_EVERY = 500;

/** The codes a load may fail with. NATIVE (a failure while computing), NATIVE_BUILD, DISPOSED, ABORTED are not among them. */
const LOAD_CODES: ReadonlySet<LmiErrorCode> = new Set(['GGUF_FORMAT', 'UNSUPPORTED', 'TOKENIZER', 'INVALID_ARGUMENT']);

const collect: () => void = (() => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  return typeof gc === 'function' ? gc : () => undefined;
})();

/** Peak resident memory since the last reset (Linux: VmHWM, reset through clear_refs); null elsewhere. */
const peakRss = {
  reset(): boolean {
    try {
      writeFileSync('/proc/self/clear_refs', '5');
      return true;
    } catch {
      return false;
    }
  },
  read(): number | null {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
      return m ? Number(m[1]) * 1024 : null;
    } catch {
      return null;
    }
  },
};

/** Memory watch over one layer: rss after every case, and the kernel's peak where available. */
class MemoryWatch {
  private base = 0;
  private readonly hwmWorks: boolean;
  worstGrowth = 0;
  worstPeak = 0;
  constructor() {
    collect();
    this.base = process.memoryUsage.rss();
    this.hwmWorks = peakRss.reset() && peakRss.read() !== null;
  }
  sample(i: number): void {
    this.worstGrowth = Math.max(this.worstGrowth, process.memoryUsage.rss() - this.base);
    if (this.hwmWorks) this.worstPeak = Math.max(this.worstPeak, (peakRss.read() ?? 0) - this.base);
    if (i % GC_EVERY === GC_EVERY - 1) collect();
  }
}

type Outcome = 'model' | LmiErrorCode;

interface Tally {
  outcomes: Map<string, number>;
  /** Milliseconds spent per outcome. */
  time: Map<string, number>;
  evals: { finite: number; nonFinite: number; failed: Map<string, number> };
  failures: string[];
  slowest: number;
}

function newTally(): Tally {
  return { outcomes: new Map(), time: new Map(), evals: { finite: 0, nonFinite: 0, failed: new Map() }, failures: [], slowest: 0 };
}

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

function describeTally(t: Tally): string {
  const o = [...t.outcomes]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n} (${((t.time.get(k) ?? 0) / n).toFixed(1)} ms each)`)
    .join(', ');
  const f = [...t.evals.failed].map(([k, n]) => `${k} ${n}`).join(', ');
  return `outcomes: ${o}; evals: ${t.evals.finite} finite, ${t.evals.nonFinite} non-finite${f ? `, failed: ${f}` : ''}; slowest case ${t.slowest.toFixed(0)} ms`;
}

// ---------------------------------------------------------------------------------------------
// Layer 1: mutated files

interface KeyedField extends Field {
  /** The metadata key or tensor name this field belongs to. */
  owner: string;
}

interface Subject {
  name: string;
  bytes: Uint8Array;
  fields: KeyedField[];
  headerEnd: number;
  /** Scalar value fields of the `llama.*` hyperparameter keys. */
  hparams: KeyedField[];
  /** Every field of the tokenizer.* entries. */
  tokenizer: KeyedField[];
  /** Every field of the tensor table. */
  table: KeyedField[];
}

function subject(name: string, source: Uint8Array): Subject {
  const bytes = Uint8Array.from(source);
  const { fields, headerEnd } = mapFields(bytes);
  const decoder = new TextDecoder();
  const keyed: KeyedField[] = [];
  let owner = '';
  for (const f of fields) {
    if (f.kind === 'key_len' || f.kind === 'name_len') {
      const n = Number(new DataView(bytes.buffer).getBigUint64(f.offset, true));
      owner = (f.kind === 'name_len' ? 'tensor:' : '') + decoder.decode(bytes.subarray(f.offset + 8, f.offset + 8 + n));
    }
    keyed.push({ ...f, owner });
  }
  return {
    name,
    bytes,
    fields: keyed,
    headerEnd,
    hparams: keyed.filter((f) => f.kind === 'scalar' && /^(llama|qwen2|gptneox|mpt)\./.test(f.owner)),
    tokenizer: keyed.filter((f) => f.owner.startsWith('tokenizer.')),
    table: keyed.filter((f) => f.owner.startsWith('tensor:')),
  };
}

const U32_VALUES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 31, 32, 63, 64, 65, 128, 172, 173, 255, 256, 511, 512, 513, 1024,
  2 ** 16, 2 ** 20, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
const U64_VALUES = [0n, 1n, 2n, 3n, 4n, 8n, 31n, 32n, 64n, 512n, 2n ** 20n, 2n ** 31n, 2n ** 32n, 2n ** 40n, 2n ** 53n - 1n,
  2n ** 53n, 2n ** 62n, 2n ** 63n, 2n ** 64n - 1n];
const F32_VALUES = [0, -0, -1, 1, 1e-5, 1e-30, 1e30, 3.4e38, 1e-45, 0.5, 10000, 1e-12, NaN, Infinity, -Infinity, -1e-5];
const TYPE_VALUES = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
  30, 31, 34, 35, 39, 40, 41, 42, 45, 99, 2 ** 31 - 1, 2 ** 32 - 1];

interface Mutated {
  bytes: Uint8Array;
  what: string[];
}

/** 1–3 mutations of a copy of the subject's bytes. */
function mutateFile(s: Subject, rng: Rng): Mutated {
  let b = Uint8Array.from(s.bytes);
  let dv = new DataView(b.buffer);
  const what: string[] = [];
  const n = rng.next() < 0.7 ? 1 : rng.int(2, 3);
  const setField = (f: KeyedField) => {
    if (f.size === 8) {
      const old = dv.getBigUint64(f.offset, true);
      const x = rng.next() < 0.25 ? BigInt.asUintN(64, old + BigInt(rng.pick([1, -1, 2, -2, 8, -8, 32, 64]))) : rng.pick(U64_VALUES);
      dv.setBigUint64(f.offset, x, true);
      return `${x}`;
    }
    if (f.size === 4) {
      const x = rng.pick(U32_VALUES);
      dv.setUint32(f.offset, x, true);
      return `${x}`;
    }
    const at = f.offset + rng.int(0, Math.max(0, f.size - 1));
    b[at] = rng.int(0, 255);
    return `byte@${at}`;
  };
  for (let k = 0; k < n; k++) {
    const r = rng.next();
    if (r < 0.3) {
      // A hyperparameter's value: integer, float (f32 keys) or raw bits.
      const f = rng.pick(s.hparams);
      const isFloat = /epsilon|freq_base|scale/.test(f.owner);
      if (isFloat && rng.next() < 0.8) {
        const x = rng.pick(F32_VALUES);
        dv.setFloat32(f.offset, x, true);
        what.push(`${f.owner} = ${x}`);
      } else if (rng.next() < 0.85) {
        what.push(`${f.owner} = ${setField(f)}`);
      } else {
        dv.setUint32(f.offset, rng.int(0, 2 ** 32 - 1), true);
        what.push(`${f.owner} random bits`);
      }
    } else if (r < 0.45) {
      // The tokenizer: array lengths, string lengths, ids, scores, token types, the model name
      // (most of its fields are the 512 token strings' lengths: those get a fifth of the picks).
      const strings = s.tokenizer.filter((x) => x.kind === 'string_len');
      const f = rng.next() < 0.2 ? rng.pick(strings) : rng.pick(s.tokenizer.filter((x) => x.kind !== 'string_len' || x.owner === 'tokenizer.ggml.model'));
      if (f.kind === 'scalar' && f.size > 8) {
        // an array's payload: a few elements
        for (let m = rng.int(1, 8); m > 0; m--) {
          const at = f.offset + 4 * rng.int(0, f.size / 4 - 1);
          if (f.owner.endsWith('scores')) dv.setFloat32(at, rng.pick(F32_VALUES), true);
          else dv.setInt32(at, rng.pick([-1, 0, 1, 2, 3, 4, 5, 6, 7, 99, 2 ** 31 - 1]), true);
        }
        what.push(`${f.owner} elements`);
      } else if (f.kind === 'string_len' && f.owner === 'tokenizer.ggml.model' && rng.next() < 0.7) {
        const len = Number(dv.getBigUint64(f.offset, true));
        b[f.offset + 8 + rng.int(0, len - 1)] = rng.pick([0x00, 0x20, 0x41, 0x62, 0x78, 0xc3, 0xff]);
        what.push('tokenizer.ggml.model byte');
      } else if (f.kind === 'value_type' || f.kind === 'array_type') {
        // another scalar type of the same size: the file still parses, the tokenizer must judge it
        const old = dv.getUint32(f.offset, true);
        const same = [[0, 1, 7], [2, 3], [4, 5, 6], [10, 11, 12]].find((g) => g.includes(old));
        const x = same && rng.next() < 0.8 ? rng.pick(same) : rng.pick([4, 5, 6, 8, 9]);
        dv.setUint32(f.offset, x, true);
        what.push(`${f.owner} ${f.kind} ${old} -> ${x}`);
      } else if (f.kind === 'scalar' && f.size === 4) {
        dv.setUint32(f.offset, rng.pick([0, 1, 2, 511, 512, 513, 2 ** 31 - 1, 2 ** 32 - 1]), true);
        what.push(`${f.owner} id`);
      } else {
        what.push(`${f.owner} ${f.kind} = ${setField(f)}`);
      }
    } else if (r < 0.7) {
      // The tensor table.
      const t = rng.next();
      const offs = s.table.filter((f) => f.kind === 'tensor_offset');
      if (t < 0.25) {
        const f = rng.pick(s.table.filter((x) => x.kind === 'dim'));
        const old = dv.getBigUint64(f.offset, true);
        const x = rng.pick([0n, 1n, 2n, old - 1n, old + 1n, old * 2n, old / 2n, 256n, 2n ** 31n, 2n ** 32n, 2n ** 40n, 2n ** 53n, 2n ** 63n]);
        dv.setBigUint64(f.offset, BigInt.asUintN(64, x), true);
        what.push(`${f.owner} dim = ${x}`);
      } else if (t < 0.35) {
        const f = rng.pick(s.table.filter((x) => x.kind === 'n_dims'));
        dv.setUint32(f.offset, rng.int(0, 6), true);
        what.push(`${f.owner} n_dims`);
      } else if (t < 0.55) {
        const f = rng.pick(s.table.filter((x) => x.kind === 'tensor_type'));
        const x = rng.pick(TYPE_VALUES);
        dv.setUint32(f.offset, x, true);
        what.push(`${f.owner} type = ${x}`);
      } else if (t < 0.7) {
        const a = rng.pick(offs);
        const c = rng.pick(offs);
        const va = dv.getBigUint64(a.offset, true);
        dv.setBigUint64(a.offset, dv.getBigUint64(c.offset, true), true);
        dv.setBigUint64(c.offset, va, true);
        what.push(`swap offsets of ${a.owner} and ${c.owner}`);
      } else if (t < 0.85) {
        const f = rng.pick(offs);
        const x = rng.pick([0n, 1n, 2n, 4n, 32n, BigInt(b.length), BigInt(b.length) - 32n, 2n ** 40n, 2n ** 64n - 32n, BigInt(rng.int(0, b.length)) & ~31n]);
        dv.setBigUint64(f.offset, x, true);
        what.push(`${f.owner} offset = ${x}`);
      } else {
        // a byte of a tensor name: a missing, unknown or duplicated tensor
        const f = rng.pick(s.table.filter((x) => x.kind === 'name_len'));
        const len = Number(dv.getBigUint64(f.offset, true));
        const at = f.offset + 8 + rng.int(0, len - 1);
        b[at] = rng.pick([0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x2e, 0x00, 0xff, rng.int(0, 255)]);
        what.push(`${f.owner} name byte`);
      }
    } else if (r < 0.78) {
      // Inflated counts and lengths.
      const f = rng.pick(s.fields.filter((x) => ['n_tensors', 'n_kv', 'array_len', 'string_len', 'key_len', 'name_len'].includes(x.kind)));
      what.push(`${f.owner} ${f.kind} = ${setField(f)}`);
    } else if (r < 0.88) {
      // Bit flips: mostly the header, some in the weights.
      const m = rng.int(1, 8);
      const inData = rng.next() < 0.3;
      for (let i = 0; i < m; i++) {
        const at = inData ? rng.int(s.headerEnd, b.length - 1) : rng.int(0, s.headerEnd - 1);
        b[at] ^= 1 << rng.int(0, 7);
      }
      what.push(`flip ${m} bits in the ${inData ? 'data' : 'header'}`);
    } else {
      // Truncation: in the header, or in the data (tensors past the end).
      const end = rng.next() < 0.4 ? rng.int(0, s.headerEnd) : rng.int(s.headerEnd, b.length - 1);
      b = b.slice(0, end);
      dv = new DataView(b.buffer);
      what.push(`truncate to ${end}`);
      break;
    }
  }
  return { bytes: b, what };
}

// ---------------------------------------------------------------------------------------------
// Layer 2: hostile specs

const NUMBERS: unknown[] = [0, -1, 1, 2, 3, 4, 7, 8, 16, 32, 63, 64, 65, 512, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 52,
  2 ** 53, 2 ** 53 + 2, 2 ** 63, 1e300, -1e300, 0.5, 1.5, -0, Number.MIN_VALUE, NaN, Infinity, -Infinity];
const NOT_NUMBERS: unknown[] = ['8', null, undefined, true, {}, [], 8n, Symbol('x'), () => 8];
const HPARAM_KEYS = ['nVocab', 'nEmbd', 'nLayer', 'nHead', 'nHeadKV', 'headDim', 'nFF', 'normEps', 'contextLength', 'ropeTheta',
  'ropeFreqScale', 'rotaryDim', 'ropePairing', 'parallelResidual', 'alibiBiasMax', 'clampKQV'] as const;
const ARCHES = ['llama', 'qwen2', 'gptneox', 'mpt', 'gpt2', '', 'LLAMA', 'llama\0'];

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type LooseSpec = Mutable<NativeModelSpec> & Record<string, unknown>;

function cloneSpec(spec: NativeModelSpec): LooseSpec {
  return { ...spec, hparams: { ...spec.hparams }, tensors: spec.tensors.map((t) => ({ ...t, dims: [...t.dims] })) } as LooseSpec;
}

function sizeOf(type: number, dims: number[]): number {
  // F32 only: the fixtures' tensors are F32 and "consistent" rewrites keep them F32.
  return dims.reduce((a, d) => a * d, type === 0 ? 4 : 1);
}

/** A thrown-from-getter error: it must come back as itself (the addon may not swallow or crash on it). */
class GetterTrap extends Error {}

interface SpecCase {
  spec: unknown;
  what: string[];
  trap?: boolean;
}

function mutateSpec(base: NativeModelSpec, fileSizes: Map<string, number>, other: string[], rng: Rng): SpecCase {
  const s = cloneSpec(base);
  const hp = s.hparams as unknown as Record<string, unknown>;
  const what: string[] = [];
  let trap = false;
  const fileSize = fileSizes.get(base.path)!;
  type LooseTensor = Mutable<NativeTensorSpec> & Record<string, unknown>;
  // Earlier mutations of the same case may have replaced the list or the hyperparameters.
  const tensor = (): LooseTensor | null => {
    const list = Array.isArray(s.tensors) ? s.tensors.filter((t) => t !== null && typeof t === 'object') : [];
    return list.length > 0 ? (list[rng.int(0, list.length - 1)] as LooseTensor) : null;
  };
  const hparamsIntact = () => s.hparams !== null && typeof s.hparams === 'object' && !Array.isArray(s.hparams);
  const n = rng.next() < 0.6 ? 1 : rng.int(2, 4);
  for (let k = 0; k < n; k++) {
    const r = rng.next();
    if (r < 0.22) {
      const key = rng.pick(HPARAM_KEYS);
      hp[key] = rng.next() < 0.85 ? rng.pick(NUMBERS) : rng.pick(NOT_NUMBERS);
      what.push(`hparams.${key} = ${String(hp[key])}`);
    } else if (r < 0.32 && hparamsIntact()) {
      // Head layouts that keep every product equal (loadable) or break one of them.
      const hq = base.hparams.nHead * base.hparams.headDim;
      const hkv = base.hparams.nHeadKV * base.hparams.headDim;
      const headDim = rng.pick([1, 2, 4, 8, 16, 32, 64, 3, 0]);
      s.hparams.headDim = headDim;
      s.hparams.nHead = headDim ? Math.floor(hq / headDim) : 8;
      s.hparams.nHeadKV = rng.next() < 0.7 && headDim ? Math.floor(hkv / headDim) : rng.pick([0, 1, 3, 5, 7, 9, 2 ** 20]);
      s.hparams.rotaryDim = rng.pick([0, headDim, 2, 4, headDim + 2, 1]);
      what.push(`heads ${s.hparams.nHead}/${s.hparams.nHeadKV} x ${headDim}, rotary ${s.hparams.rotaryDim}`);
    } else if (r < 0.4 && hparamsIntact() && Array.isArray(s.tensors)) {
      // Huge sizes with tensors reshaped to agree (so the file-extent and overflow checks are reached).
      const key = rng.pick(['nVocab', 'nEmbd', 'nFF'] as const);
      const x = rng.pick([2 ** 20, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 40, 2 ** 53 - 1]);
      s.hparams[key] = x;
      for (const t of s.tensors) {
        if (t === null || typeof t !== 'object' || !Array.isArray(t.dims) || typeof t.name !== 'string') continue;
        if (key === 'nVocab' && (t.name === 'token_embd.weight' || t.name === 'output.weight')) t.dims[1] = x;
        if (key === 'nEmbd' && t.dims[0] === base.hparams.nEmbd) t.dims[0] = x;
        if (key === 'nFF' && t.name.includes('ffn_down')) t.dims[0] = x;
        if (key === 'nFF' && (t.name.includes('ffn_up') || t.name.includes('ffn_gate'))) t.dims[1] = x;
        if (rng.next() < 0.8) t.byteLength = Math.min(sizeOf(t.type, t.dims), 2 ** 53 - 1);
      }
      what.push(`${key} = ${x} with tensors to match`);
    } else if (r < 0.62 && tensor() !== null) {
      const t = tensor()!;
      const field = rng.int(0, 6);
      if (field === 0) {
        t.dims = rng.pick([[], [0], [64, 0], [64, 64, 1, 1, 1], [2 ** 40, 2 ** 40, 2 ** 40, 2 ** 40], [2 ** 53, 2], [-1, 64],
          [NaN], [64.5], [1e300], [t.dims[0], t.dims[1] ?? 1, 2], [t.dims[1] ?? 1, t.dims[0]], ['64'], Array(9).fill(1)]) as number[];
        if (rng.next() < 0.5) t.byteLength = sizeOf(0, t.dims.map(Number).filter(Number.isFinite));
      } else if (field === 1) {
        t.offset = rng.pick([fileSize, fileSize - 4, fileSize + 4, fileSize - t.byteLength + 4, t.offset + 1, t.offset + 2, 2 ** 53 - 1,
          2 ** 53, -4, NaN, 0, 1, 3]) as number;
      } else if (field === 2) {
        t.byteLength = rng.pick([0, t.byteLength + 1, t.byteLength - 4, t.byteLength * 2, 2 ** 53 - 1, fileSize, -4, NaN]) as number;
      } else if (field === 3) {
        t.type = rng.pick([...TYPE_VALUES, -1, 1.5, NaN, 2 ** 40]);
      } else if (field === 4) {
        t.name = rng.pick(['', 'token_embd.weight', 'output_norm.weight', 'blk.0.attn_q.weight', 'x'.repeat(10_000), 'blk.99.attn_q.weight',
          'rope_freqs.weight', 'blk.0.ffn_gate_inp.weight', 'a\0b', 42, null]) as string;
      } else if (field === 5) {
        // another tensor's bytes: same length (loadable, weights swapped) or not
        const o = tensor()!;
        t.offset = o.offset;
        if (rng.next() < 0.5) t.byteLength = o.byteLength;
      } else {
        delete (t as Record<string, unknown>)[rng.pick(['name', 'type', 'dims', 'offset', 'byteLength'])];
      }
      what.push(`tensor ${String(t.name).slice(0, 40)} field ${field}`);
    } else if (r < 0.72 && tensor() !== null) {
      const op = rng.int(0, 5);
      if (op === 0) s.tensors.splice(rng.int(0, s.tensors.length - 1), 1);
      else if (op === 1) {
        const t = tensor()!;
        s.tensors.push({ ...t, dims: Array.isArray(t.dims) ? [...t.dims] : t.dims });
      }
      else if (op === 2) s.tensors = rng.pick([[], {}, null, 'tensors', [null], [1, 2]]) as NativeTensorSpec[];
      else if (op === 3) {
        const sparse: NativeTensorSpec[] = [];
        sparse[s.tensors.length + 2] = s.tensors[0];
        s.tensors = sparse;
      } else if (op === 4) s.tensors = [...s.tensors].reverse();
      else s.hparams = rng.pick([null, 1, 'x', []]) as unknown as NativeModelSpec['hparams'];
      what.push(`structure ${op}`);
    } else if (r < 0.8) {
      s.arch = rng.pick(ARCHES) as NativeModelSpec['arch'];
      what.push(`arch ${s.arch}`);
    } else if (r < 0.86) {
      s.path = rng.pick([...other, '', '/', '/dev/null', '/proc/self/status', `${base.path}.missing`, 'relative/none.gguf', 7, null]) as string;
      what.push(`path ${String(s.path)}`);
    } else if (r < 0.9) {
      s.threads = rng.pick([0, -1, 1, 2, 1024, 1025, 1.5, NaN, '2']) as number;
      what.push(`threads ${String(s.threads)}`);
    } else if (r < 0.93) {
      // a getter that throws, at the top, in hparams or in a tensor
      const where = rng.pick(['top', 'hparams', 'tensor'] as const);
      const target: Record<string, unknown> | null = where === 'top' ? s : where === 'hparams' ? hp : tensor();
      const key = where === 'top' ? rng.pick(['path', 'arch', 'threads', 'tensors', 'hparams']) : where === 'hparams' ? rng.pick(HPARAM_KEYS) : rng.pick(['name', 'dims', 'offset']);
      if (target !== null && typeof target === 'object') {
        Object.defineProperty(target, key, { get() { throw new GetterTrap(`trap ${key}`); }, enumerable: true, configurable: true });
        trap = true;
      }
      what.push(`getter trap ${where}.${key}`);
      break; // the last mutation: nothing may read the trapped field before the addon does
    } else if (hparamsIntact()) {
      // A loadable variant: fewer layers, another context length, epsilon, base.
      s.hparams.nLayer = rng.int(1, base.hparams.nLayer);
      s.hparams.contextLength = rng.pick([0, 1, 256, 2 ** 31, 2 ** 52]);
      s.hparams.normEps = rng.pick([0, 1e-30, 1e-5, 1, 1e30, 1e300]);
      s.hparams.ropeTheta = rng.pick([1e-300, 1e-6, 1, 10000, 1e300]);
      s.hparams.ropeFreqScale = rng.pick([1e-300, 0.25, 1, 1e300]);
      const h = s.hparams;
      what.push(`variant nLayer ${h.nLayer} ctx ${h.contextLength} eps ${h.normEps} theta ${h.ropeTheta} scale ${h.ropeFreqScale}`);
    }
  }
  return { spec: s, what, trap };
}

// ---------------------------------------------------------------------------------------------

/**
 * Small synthetic models beside the fixtures, so the other architectures' checks and a K-quant's
 * block rules are reached too: gptneox (fused QKV, partial rotary, biases), mpt (ALiBi, Q8_0,
 * biases, clamp), llama in Q4_K (256-wide rows, quantized by ggml).
 */
const SMALL = { seed: 3, nLayer: 2, nCtx: 128 };
const SYNTHETIC: ReadonlyArray<readonly [string, (addon: NativeAddon) => Uint8Array]> = [
  ['gptneox-f32', () => makeSyntheticModel('gptneox', { ...SMALL, nEmbd: 64, nHead: 4, nFF: 128, rotaryDim: 8, weightType: 'F32' })],
  ['mpt-q8_0', () => makeSyntheticModel('mpt', { ...SMALL, nEmbd: 64, nHead: 4, nFF: 128, biases: true, clampKQV: 2, weightType: 'Q8_0' })],
  ['llama-q4_k', (addon) =>
    quantizeModel(makeSyntheticModel('llama', { ...SMALL, nEmbd: 256, nHead: 4, nHeadKV: 2, nFF: 256, weightType: 'F32' }), GgmlType.Q4_K, addon.quantize)],
];

describe('native load path fuzz', () => {
  let addon: NativeAddon;
  let dir: string;
  let subjects: Subject[];
  const report: string[] = [];

  beforeAll(async () => {
    addon = await loadAddon();
    dir = await mkdtemp(path.join(os.tmpdir(), 'lmi-load-fuzz-'));
    subjects = [
      subject('stories260K', readFixture(STORIES)),
      subject('passkey-tiny', readFixture(PASSKEY)),
      ...SYNTHETIC.map(([name, make]) => subject(name, make(addon))),
    ];
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    if (process.env.LMI_FUZZ_VERBOSE || process.env.LMI_VERBOSE) console.log(report.join('\n'));
  });

  test('the unmutated subjects load and compute', async () => {
    for (const sub of subjects) {
      const file = path.join(dir, `${sub.name}.gguf`);
      writeFileSync(file, sub.bytes);
      const m = await loadModel(file, { threads: 1 });
      const s = m.createSession({ attention: { nGlobal: 2, nLocal: 16 }, chunkSize: 4, kvType: 'f32', threads: 1 });
      const r = await s.score([1, 3, 4, 5]);
      expect(r.nll.every(Number.isFinite)).toBe(true);
      await m.dispose();
    }
  });

  test(`${FILE_CASES} mutated files through loadModel(path), then a 4-token eval`, async () => {
    const rng = new Rng(SEED_FILES);
    const tally = newTally();
    const memory = new MemoryWatch();
    // A few file names, each rewritten by rename (a new inode): a mapping that outlived its
    // model could never see its file shrink under it.
    const names = [0, 1, 2, 3].map((i) => path.join(dir, `case-${i}.gguf`));
    const tmp = path.join(dir, 'next.gguf');
    const t0 = performance.now();
    for (let i = 0; i < FILE_CASES; i++) {
      const r = rng.next();
      const s = subjects[r < 0.5 ? 0 : r < 0.75 ? 1 : rng.int(2, subjects.length - 1)];
      const m = mutateFile(s, rng);
      const file = names[i % names.length];
      writeFileSync(tmp, m.bytes);
      renameSync(tmp, file);
      const c0 = performance.now();
      let outcome: Outcome;
      try {
        const model = await loadModel(file, { threads: 1 });
        outcome = 'model';
        try {
          const session = model.createSession({ attention: { nGlobal: 2, nLocal: 16 }, chunkSize: 4, kvType: 'f32', threads: 1 });
          const ids = [1, 3, 4, 5].map((x) => x % model.info.nVocab);
          const r = await session.score(ids);
          if (r.nll.every(Number.isFinite)) tally.evals.finite++;
          else tally.evals.nonFinite++;
        } catch (e) {
          if (e instanceof LmiError && e.code !== 'NATIVE_BUILD') {
            bump(tally.evals.failed, e.code);
            if (tally.evals.failed.get(e.code)! <= 3) report.push(`  file eval failed (${m.what.join('; ')}): ${e.message}`);
          }
          else tally.failures.push(`case ${i} (${s.name}: ${m.what.join('; ')}): eval threw ${String((e as Error)?.stack ?? e)}`);
        }
        await model.dispose();
      } catch (e) {
        if (e instanceof LmiError && LOAD_CODES.has(e.code) && e.message.length > 0) outcome = e.code;
        else {
          outcome = 'NATIVE';
          tally.failures.push(`case ${i} (${s.name}: ${m.what.join('; ')}): ${String((e as Error)?.stack ?? e)}`);
        }
      }
      const ms = performance.now() - c0;
      tally.slowest = Math.max(tally.slowest, ms);
      bump(tally.outcomes, outcome);
      tally.time.set(outcome, (tally.time.get(outcome) ?? 0) + ms);
      memory.sample(i);
      if (performance.now() - t0 > TIME_BUDGET_MS) {
        tally.failures.push(`time budget of ${TIME_BUDGET_MS} ms exceeded after ${i + 1} cases`);
        break;
      }
    }
    report.push(`files: ${FILE_CASES} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${describeTally(tally)}; ` +
      `rss growth ${(memory.worstGrowth / 2 ** 20).toFixed(0)} MiB, peak ${(memory.worstPeak / 2 ** 20).toFixed(0)} MiB over the start`);
    expect(tally.failures.slice(0, 5)).toEqual([]);
    expect(tally.slowest).toBeLessThan(SLOWEST_CASE_MS);
    expect(memory.worstGrowth).toBeLessThan(MEMORY_BUDGET);
    expect(memory.worstPeak).toBeLessThan(MEMORY_BUDGET);
    // The mutations reach every stage: models load and compute, and each check refuses something.
    expect(tally.outcomes.get('model') ?? 0).toBeGreaterThan(150);
    expect(tally.evals.finite).toBeGreaterThan(100);
    expect(tally.outcomes.get('GGUF_FORMAT') ?? 0).toBeGreaterThan(500);
    expect(tally.outcomes.get('UNSUPPORTED') ?? 0).toBeGreaterThan(25);
    expect(tally.outcomes.get('INVALID_ARGUMENT') ?? 0).toBeGreaterThan(5);
    expect(tally.outcomes.get('TOKENIZER') ?? 0).toBeGreaterThan(5);
  }, 120_000);

  test(`${SPEC_CASES} hostile specs through the addon's loadModel(spec), then a 4-token eval`, async () => {
    const rng = new Rng(SEED_SPECS);
    const tally = newTally();
    const bases = [await specFromGguf(fixturePath(STORIES), 1), await specFromGguf(fixturePath(PASSKEY), 1)];
    for (const [name, make] of SYNTHETIC) {
      const file = path.join(dir, `${name}.gguf`);
      writeFileSync(file, make(addon));
      bases.push(await specFromGguf(file, 1));
    }
    const fileSizes = new Map(bases.map((b) => [b.path, readFileSync(b.path).length]));
    const other = [bases[1].path, bases[0].path, dir, path.join(dir, 'empty.gguf')];
    writeFileSync(other[3], new Uint8Array(0));
    const memory = new MemoryWatch();
    const t0 = performance.now();
    for (let i = 0; i < SPEC_CASES; i++) {
      const r = rng.next();
      const base = bases[r < 0.45 ? 0 : r < 0.65 ? 1 : rng.int(2, bases.length - 1)];
      const c = mutateSpec(base, fileSizes, other, rng);
      const c0 = performance.now();
      let outcome: Outcome;
      let promise: Promise<unknown>;
      try {
        promise = addon.loadModel(c.spec as NativeModelSpec);
      } catch (e) {
        promise = Promise.reject(new Error(`threw synchronously instead of rejecting: ${String(e)}`));
      }
      try {
        const model = (await promise) as Awaited<ReturnType<NativeAddon['loadModel']>>;
        outcome = 'model';
        try {
          const hp = (c.spec as NativeModelSpec).hparams;
          const ctx = model.createContext({ nSlot: 8, nArchive: 0, topKFromLayer: 0, kvType: 'f32', maxBatch: 4, threads: 1 });
          const logits = await ctx.eval(new SlotTable(8, 0).batch([1, 3, 4, 5].map((x) => x % hp.nVocab), vanillaMask(8), 'all'));
          if (logits.length !== 4 * hp.nVocab) tally.failures.push(`case ${i}: ${logits.length} logits`);
          else if (logits.every(Number.isFinite)) tally.evals.finite++;
          else tally.evals.nonFinite++;
          ctx.dispose();
        } catch (e) {
          const typed = fromNativeError(e) as LmiError;
          if ((e as { code?: string })?.code !== undefined && typed.code !== 'NATIVE_BUILD') bump(tally.evals.failed, typed.code);
          else tally.failures.push(`case ${i} (${c.what.join('; ')}): eval threw ${String((e as Error)?.stack ?? e)}`);
        }
        model.dispose();
      } catch (e) {
        const code = (e as { code?: string })?.code;
        if (c.trap && e instanceof GetterTrap) outcome = 'INVALID_ARGUMENT';
        else if (code !== undefined && LOAD_CODES.has(code as LmiErrorCode) && (e as Error).message.length > 0) outcome = code as LmiErrorCode;
        else {
          outcome = 'NATIVE';
          tally.failures.push(`case ${i} (${c.what.join('; ')}): ${String((e as Error)?.stack ?? e)} code ${String(code)}`);
        }
      }
      const ms = performance.now() - c0;
      const label = c.trap && outcome === 'INVALID_ARGUMENT' ? 'getter trap' : outcome;
      tally.slowest = Math.max(tally.slowest, ms);
      bump(tally.outcomes, label);
      tally.time.set(label, (tally.time.get(label) ?? 0) + ms);
      memory.sample(i);
      if (performance.now() - t0 > TIME_BUDGET_MS) {
        tally.failures.push(`time budget of ${TIME_BUDGET_MS} ms exceeded after ${i + 1} cases`);
        break;
      }
    }
    report.push(`specs: ${SPEC_CASES} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${describeTally(tally)}; ` +
      `rss growth ${(memory.worstGrowth / 2 ** 20).toFixed(0)} MiB, peak ${(memory.worstPeak / 2 ** 20).toFixed(0)} MiB over the start`);
    expect(tally.failures.slice(0, 5)).toEqual([]);
    expect(tally.slowest).toBeLessThan(SLOWEST_CASE_MS);
    expect(memory.worstGrowth).toBeLessThan(MEMORY_BUDGET);
    expect(memory.worstPeak).toBeLessThan(MEMORY_BUDGET);
    expect(tally.outcomes.get('model') ?? 0).toBeGreaterThan(300);
    expect(tally.evals.finite).toBeGreaterThan(100);
    expect(tally.outcomes.get('GGUF_FORMAT') ?? 0).toBeGreaterThan(500);
    expect(tally.outcomes.get('UNSUPPORTED') ?? 0).toBeGreaterThan(100);
    expect(tally.outcomes.get('INVALID_ARGUMENT') ?? 0).toBeGreaterThan(1000);
  }, 120_000);
});

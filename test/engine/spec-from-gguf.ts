/**
 * Test-only glue for the engine tests: a NativeModelSpec built from a GGUF file with lib/gguf,
 * and slot tables (vanilla and a Λ ring) like the ones lib/cache keeps. lib/model and lib/cache
 * replace both in the package; these stay deliberately small.
 */
import {
  GgmlType,
  getBool,
  getInteger,
  getNumber,
  readGguf,
  requireInteger,
  requireNumber,
  requireString,
  type GgufFile,
} from '../../lib/gguf';
import type {
  NativeArchitecture,
  NativeEvalBatch,
  NativeHyperparameters,
  NativeModelSpec,
  NativeTensorSpec,
} from '../../lib/native/types';

const ARCHES: readonly NativeArchitecture[] = ['llama', 'qwen2', 'gptneox', 'mpt'];

export function hparamsFromGguf(file: GgufFile): { arch: NativeArchitecture; hparams: NativeHyperparameters } {
  const m = file.metadata;
  const arch = requireString(m, 'general.architecture') as NativeArchitecture;
  if (!ARCHES.includes(arch)) throw new Error(`test helper: architecture ${arch} not handled`);
  const nEmbd = requireInteger(m, `${arch}.embedding_length`);
  const nHead = requireInteger(m, `${arch}.attention.head_count`);
  const nHeadKV = getInteger(m, `${arch}.attention.head_count_kv`) ?? nHead;
  const headDim = getInteger(m, `${arch}.attention.key_length`) ?? nEmbd / nHead;
  const embd = file.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embd) throw new Error('test helper: no token_embd.weight');
  const rms = arch === 'llama' || arch === 'qwen2';
  const scaleLinear = getNumber(m, `${arch}.rope.scale_linear`);
  return {
    arch,
    hparams: {
      nVocab: embd.dims[1],
      nEmbd,
      nLayer: requireInteger(m, `${arch}.block_count`),
      nHead,
      nHeadKV,
      headDim,
      nFF: requireInteger(m, `${arch}.feed_forward_length`),
      normEps: requireNumber(m, rms ? `${arch}.attention.layer_norm_rms_epsilon` : `${arch}.attention.layer_norm_epsilon`),
      contextLength: requireInteger(m, `${arch}.context_length`),
      ropeTheta: getNumber(m, `${arch}.rope.freq_base`) ?? 10000,
      ropeFreqScale: scaleLinear ? 1 / scaleLinear : 1,
      rotaryDim: getInteger(m, `${arch}.rope.dimension_count`) ?? headDim,
      ropePairing: arch === 'llama' ? 'normal' : 'neox',
      parallelResidual: getBool(m, `${arch}.use_parallel_residual`) ?? false,
      alibiBiasMax: getNumber(m, `${arch}.attention.max_alibi_bias`) ?? 0,
      clampKQV: getNumber(m, `${arch}.attention.clamp_kqv`) ?? 0,
    },
  };
}

export async function specFromGguf(path: string, threads = 1): Promise<NativeModelSpec> {
  const file = await readGguf(path);
  const { arch, hparams } = hparamsFromGguf(file);
  const tensors: NativeTensorSpec[] = file.tensors.map((t) => ({
    name: t.name,
    type: t.type as GgmlType,
    dims: [...t.dims],
    offset: t.offset,
    byteLength: t.byteLength,
  }));
  return { path, arch, hparams, tensors, threads };
}

export type Mask = NativeEvalBatch['mask'];

export const vanillaMask = (n: number): Mask => ({ lambda: false, origin: 0, nGlobal: 0, nLocal: n, limitDistance: n });

/**
 * A slot table: which slot each position takes, and every slot's position. `nGlobal` pinned slots
 * hold the stream's first tokens; the rest is a ring. With nGlobal = 0 and a ring as long as the
 * stream it is the vanilla layout (slot = position). With `nArchive` > 0, a ring token about to be
 * overwritten is first copied to the next archive slot (top-k middle attention keeps it).
 */
export class SlotTable {
  readonly slotPositions: BigInt64Array;
  private next = 0;
  private archived = 0;

  constructor(readonly nSlot: number, readonly nGlobal: number, readonly nArchive = 0) {
    this.slotPositions = new BigInt64Array(nSlot + nArchive).fill(-1n);
  }

  get position(): number {
    return this.next;
  }

  slotOf(pos: number): number {
    if (pos < this.nGlobal) return pos;
    return this.nGlobal + ((pos - this.nGlobal) % (this.nSlot - this.nGlobal));
  }

  /**
   * The batch for the next tokens of the stream. Its slotPositions are the table before the batch
   * (what the batch attends, besides its own tokens); the table then records the batch's writes.
   */
  batch(tokens: ArrayLike<number>, mask: Mask, logits: NativeEvalBatch['logits'], topK = { k: 0, insertAt: 0 }): NativeEvalBatch {
    const n = tokens.length;
    const attended = this.slotPositions.slice();
    const positions = new BigInt64Array(n);
    const slots = new Int32Array(n);
    const copies: number[] = [];
    for (let i = 0; i < n; i++) {
      const pos = this.next + i;
      positions[i] = BigInt(pos);
      slots[i] = this.slotOf(pos);
      const evicted = this.slotPositions[slots[i]];
      if (this.nArchive > 0 && evicted >= 0n) {
        if (this.archived >= this.nArchive) throw new Error('test slot table: archive full');
        const dst = this.nSlot + this.archived++;
        copies.push(slots[i], dst);
        this.slotPositions[dst] = evicted;
      }
      this.slotPositions[slots[i]] = BigInt(pos);
    }
    this.next += n;
    return {
      tokens: Int32Array.from(tokens),
      positions,
      slots,
      archiveCopies: Int32Array.from(copies),
      slotPositions: attended,
      mask,
      topK,
      logits,
    };
  }
}

/** log-softmax of row r of a [rows][nVocab] logits array, in double. */
export function logSoftmaxRow(logits: Float32Array, r: number, nVocab: number): Float64Array {
  const row = logits.subarray(r * nVocab, (r + 1) * nVocab);
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(nVocab);
  for (let i = 0; i < nVocab; i++) out[i] = row[i] - lse;
  return out;
}

/** Every row's log-softmax, as float32 (what the comparisons with llama.cpp's float probabilities use). */
export function logSoftmaxRows(logits: Float32Array, nVocab: number): Float32Array[] {
  const rows: Float32Array[] = [];
  for (let r = 0; r < logits.length / nVocab; r++) rows.push(Float32Array.from(logSoftmaxRow(logits, r, nVocab)));
  return rows;
}

export function argmaxRow(logits: Float32Array, r: number, nVocab: number): number {
  let best = 0;
  for (let i = 1; i < nVocab; i++) if (logits[r * nVocab + i] > logits[r * nVocab + best]) best = i;
  return best;
}

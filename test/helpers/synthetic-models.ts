/**
 * Small random-weight GGUF models of each architecture the engine supports, complete enough for
 * llama.cpp to load: the metadata llama.cpp's loader reads for the architecture, the stories260K
 * vocabulary (SentencePiece, `tokenizer.ggml.model = llama`; llama.cpp picks the tokenizer from that
 * key, not from the architecture), and every tensor the architecture requires, named and shaped as
 * llama.cpp's loader expects. Matrices are stored in the requested type; norms and biases stay F32.
 *
 * Scales keep the model well-conditioned: embeddings ~N(0,1) (~N(0, 4/nEmbd) when tied), projections ~N(0, 1/fan_in) so
 * attention logits and activations stay O(1), classifier ~N(0, 4/nEmbd) so logits spread ~2 and
 * distributions are far from uniform (a wrong forward pass shows).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GgmlType, ggufValue, parseGguf, serializeGguf, type GgufMetadataEntry, type GgufTensorSpec } from '../../lib/gguf';
import { quantize } from '../reference/forward/blocks';
import { readFixture, STORIES } from '../gguf/helpers';
import { Rng } from './random';

export type SyntheticArch = 'llama' | 'qwen2' | 'gptneox' | 'mpt';
export type SyntheticWeightType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1';

export const SYNTHETIC_ARCHES: readonly SyntheticArch[] = ['llama', 'qwen2', 'gptneox', 'mpt'];
export const SYNTHETIC_WEIGHT_TYPES: readonly SyntheticWeightType[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1'];

export interface SyntheticModelOptions {
  seed: number;
  /** Multiple of 32 for block-quantized types (it is the row length of most matrices). */
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** Default nHead. */
  nHeadKV?: number;
  /** Multiple of 32 for block-quantized types. */
  nFF: number;
  /** `<arch>.context_length`. */
  nCtx: number;
  /** gptneox only (partial rotary); default headDim. llama.cpp requires the full head for llama and qwen2. */
  rotaryDim?: number;
  /** gptneox only; default true. */
  parallelResidual?: boolean;
  weightType: SyntheticWeightType;
  vocab?: 'stories260K';
  /** llama, qwen2, mpt: omit output.weight so the classifier is the token embedding. Default false. */
  tiedOutput?: boolean;
  /** Default 10000. */
  ropeTheta?: number;
  /** Default 1e-5. */
  normEps?: number;
  /** mpt: add biases to norms and linear layers (MPT ships without); default false. */
  biases?: boolean;
  /** mpt: default 8. */
  alibiBiasMax?: number;
  /** mpt: clamp of the fused QKV output; default 0 (none, key absent). */
  clampKQV?: number;
}

const FILE_TYPE: Record<SyntheticWeightType, number> = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, BF16: 32 };

let vocabCache: [string, GgufMetadataEntry][] | undefined;

/** The stories260K fixture's tokenizer.* metadata (512 SentencePiece pieces, BOS 1, EOS 2). */
function stories260KVocab(): [string, GgufMetadataEntry][] {
  if (!vocabCache) {
    const meta = parseGguf(readFixture(STORIES)).metadata;
    vocabCache = [...meta].filter(([k]) => k.startsWith('tokenizer.'));
  }
  return vocabCache;
}

/** GGUF bytes of a random model of `arch`. Same options, same bytes. */
export function makeSyntheticModel(arch: SyntheticArch, o: SyntheticModelOptions): Uint8Array {
  const nHeadKV = o.nHeadKV ?? o.nHead;
  const headDim = o.nEmbd / o.nHead;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`nEmbd ${o.nEmbd} / nHead ${o.nHead} must be an even integer`);
  if (o.nHead % nHeadKV !== 0) throw new Error(`nHead ${o.nHead} must be a multiple of nHeadKV ${nHeadKV}`);
  if (o.rotaryDim !== undefined && arch !== 'gptneox') throw new Error('rotaryDim applies to gptneox only');
  const rotaryDim = o.rotaryDim ?? headDim;
  if (rotaryDim % 2 !== 0 || rotaryDim > headDim) throw new Error(`rotaryDim ${rotaryDim} must be even and <= headDim ${headDim}`);
  if (o.tiedOutput && arch === 'gptneox') throw new Error('llama.cpp requires output.weight for gptneox');

  const vocab = stories260KVocab();
  const nVocab = (vocab.find(([k]) => k === 'tokenizer.ggml.tokens')![1].value as { values: string[] }).values.length;
  const nQ = o.nHead * headDim;
  const nKV = nHeadKV * headDim;
  const type = GgmlType[o.weightType];
  const rng = new Rng(o.seed);
  const tensors: GgufTensorSpec[] = [];
  const f32 = (name: string, values: Float32Array) => tensors.push({ name, type: GgmlType.F32, dims: [values.length], data: quantize(GgmlType.F32, values) });
  /** A [rows][cols] matrix, GGUF dims [cols, rows]. */
  const matrix = (name: string, cols: number, rows: number, std: number) =>
    tensors.push({ name, type, dims: [cols, rows], data: quantize(type, rng.floats(cols * rows, std)) });
  const normW = (name: string, n: number) => f32(name, Float32Array.from(rng.floats(n, 0.1), (x) => 1 + x));
  const bias = (name: string, n: number, std = 0.1) => f32(name, rng.floats(n, std));

  const withNormBias = arch === 'gptneox' || (arch === 'mpt' && o.biases === true);
  const withLinearBias = arch === 'gptneox' || (arch === 'mpt' && o.biases === true);

  // A tied classifier reads the embedding, so it gets the classifier's scale.
  matrix('token_embd.weight', o.nEmbd, nVocab, o.tiedOutput ? 2 / Math.sqrt(o.nEmbd) : 1);
  for (let l = 0; l < o.nLayer; l++) {
    const n = (s: string) => `blk.${l}.${s}`;
    normW(n('attn_norm.weight'), o.nEmbd);
    if (withNormBias) bias(n('attn_norm.bias'), o.nEmbd);
    if (arch === 'llama' || arch === 'qwen2') {
      matrix(n('attn_q.weight'), o.nEmbd, nQ, 1 / Math.sqrt(o.nEmbd));
      matrix(n('attn_k.weight'), o.nEmbd, nKV, 1 / Math.sqrt(o.nEmbd));
      matrix(n('attn_v.weight'), o.nEmbd, nKV, 1 / Math.sqrt(o.nEmbd));
      if (arch === 'qwen2') {
        bias(n('attn_q.bias'), nQ, 0.5);
        bias(n('attn_k.bias'), nKV, 0.5);
        bias(n('attn_v.bias'), nKV, 0.5);
      }
    } else {
      // Fused rows [all q | all k | all v], each head-major: the layout llama.cpp's graph slices
      // (views at 0, nEmbd, nEmbd + nKV); its converter reorders GPT-NeoX's per-head [q k v] into this.
      matrix(n('attn_qkv.weight'), o.nEmbd, nQ + 2 * nKV, 1 / Math.sqrt(o.nEmbd));
      if (withLinearBias) bias(n('attn_qkv.bias'), nQ + 2 * nKV);
    }
    matrix(n('attn_output.weight'), nQ, o.nEmbd, 1 / Math.sqrt(nQ));
    if (withLinearBias) bias(n('attn_output.bias'), o.nEmbd);
    normW(n('ffn_norm.weight'), o.nEmbd);
    if (withNormBias) bias(n('ffn_norm.bias'), o.nEmbd);
    if (arch === 'llama' || arch === 'qwen2') matrix(n('ffn_gate.weight'), o.nEmbd, o.nFF, 1 / Math.sqrt(o.nEmbd));
    matrix(n('ffn_up.weight'), o.nEmbd, o.nFF, 1 / Math.sqrt(o.nEmbd));
    if (withLinearBias) bias(n('ffn_up.bias'), o.nFF);
    matrix(n('ffn_down.weight'), o.nFF, o.nEmbd, 1 / Math.sqrt(o.nFF));
    if (withLinearBias) bias(n('ffn_down.bias'), o.nEmbd);
  }
  normW('output_norm.weight', o.nEmbd);
  if (withNormBias) bias('output_norm.bias', o.nEmbd);
  if (!o.tiedOutput) matrix('output.weight', o.nEmbd, nVocab, 2 / Math.sqrt(o.nEmbd));

  const k = (s: string) => `${arch}.${s}`;
  const meta: [string, GgufMetadataEntry][] = [
    ['general.architecture', ggufValue.string(arch)],
    ['general.name', ggufValue.string(`synthetic-${arch}-${o.weightType.toLowerCase()}-${o.seed}`)],
    ['general.file_type', ggufValue.u32(FILE_TYPE[o.weightType])],
    [k('context_length'), ggufValue.u32(o.nCtx)],
    [k('embedding_length'), ggufValue.u32(o.nEmbd)],
    [k('block_count'), ggufValue.u32(o.nLayer)],
    [k('feed_forward_length'), ggufValue.u32(o.nFF)],
    [k('attention.head_count'), ggufValue.u32(o.nHead)],
    [k('attention.head_count_kv'), ggufValue.u32(nHeadKV)],
    [k('vocab_size'), ggufValue.u32(nVocab)],
  ];
  const eps = o.normEps ?? 1e-5;
  if (arch === 'llama' || arch === 'qwen2' || arch === 'gptneox') {
    meta.push([k('rope.dimension_count'), ggufValue.u32(rotaryDim)], [k('rope.freq_base'), ggufValue.f32(o.ropeTheta ?? 10000)]);
  }
  if (arch === 'llama' || arch === 'qwen2') meta.push([k('attention.layer_norm_rms_epsilon'), ggufValue.f32(eps)]);
  else meta.push([k('attention.layer_norm_epsilon'), ggufValue.f32(eps)]);
  if (arch === 'gptneox') meta.push([k('use_parallel_residual'), ggufValue.bool(o.parallelResidual ?? true)]);
  if (arch === 'mpt') {
    meta.push([k('attention.max_alibi_bias'), ggufValue.f32(o.alibiBiasMax ?? 8)]);
    if (o.clampKQV) meta.push([k('attention.clamp_kqv'), ggufValue.f32(o.clampKQV)]);
  }
  meta.push(...vocab);
  return serializeGguf({ metadata: new Map(meta), tensors });
}

/** A file name that encodes every option, so equal options reuse one file. */
export function syntheticModelName(arch: SyntheticArch, o: SyntheticModelOptions): string {
  const parts = Object.entries(o)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, v]) => `${key}=${String(v)}`);
  return `synthetic-${arch}-${parts.join(',').replace(/[^A-Za-z0-9=,._-]/g, '_')}.gguf`;
}

/** Writes the model under `dir` (default: <os tmpdir>/lmi-synthetic; atomically, so parallel writers agree) and returns its path. */
export function writeSyntheticModel(arch: SyntheticArch, o: SyntheticModelOptions, dir = path.join(os.tmpdir(), 'lmi-synthetic')): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, syntheticModelName(arch, o));
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, makeSyntheticModel(arch, o));
  renameSync(tmp, file);
  return file;
}

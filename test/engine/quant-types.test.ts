/**
 * Every weight type the engine computes, against llama.cpp on the same file. The weights are
 * quantized by ggml itself (the addon's `quantize`, ggml_quantize_chunk without an importance
 * matrix: what llama.cpp's quantize tool writes), so these are the files users get, K-quants
 * included: a random-weight llama (dims multiples of 256, the K-quant super-block) converted from
 * one F32 model to each type, plus K-quants on the other architectures (each architecture's F32
 * file too: the baseline the quantization's own effect is measured from).
 *
 * Both sides run ggml's CPU matmuls on the same bytes, for a prompt batch and for single-token
 * steps (activations rounded to Q8_K / Q8_0 / Q8_1 blocks for quantized weights, f16 for F16
 * weights); the attention differs (our Λ kernel in f32,
 * vanilla here, vs llama.cpp's f32 path), and so does the build of ggml. The tolerance below is
 * what that leaves, measured (see TOLERANCE). An unsupported type is a typed UNSUPPORTED error
 * naming it, through the whole loadModel(path).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { LmiError } from '../../lib/errors';
import { GgmlType, tensorByteLength } from '../../lib/gguf';
import { loadModel } from '../../lib/model';
import { systemInfo } from '../../lib/system';
import { loadAddon } from '../../lib/native/addon';
import type { NativeAddon } from '../../lib/native/types';
import { mapFields } from '../gguf/helpers';
import { runOracle } from '../helpers/llama-oracle';
import { quantizeModel, rewriteTensors } from '../helpers/quantized-models';
import { Rng } from '../helpers/random';
import { makeSyntheticModel, type SyntheticArch, type SyntheticModelOptions } from '../helpers/synthetic-models';
import { logProbGap, randomTokens, type Gap } from '../reference-forward/compare';
import { logSoftmaxRows, SlotTable, specFromGguf, type Mask } from './spec-from-gguf';

const N = 48;
const PROMPT = 40; // then N - PROMPT single-token evals
const TOKENS = randomTokens(N, 17);
const BASE: SyntheticModelOptions = { seed: 41, nEmbd: 256, nLayer: 2, nHead: 4, nFF: 512, nCtx: 256, weightType: 'F32' };
const ARCH_BASE: Record<SyntheticArch, Partial<SyntheticModelOptions>> = {
  llama: { nHeadKV: 2 },
  qwen2: { nHeadKV: 2 },
  gptneox: { rotaryDim: 32 },
  mpt: {},
};

const K_QUANTS = [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K] as const;
const OTHERS = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0] as const;

/**
 * Bounds on |Δ log p| (max over every position and vocabulary entry, and rms), measured with this
 * ggml build against node-llama-cpp 3.21.1's prebuilt llama.cpp (which picks its own CPU variant:
 * AMX / AVX-512 kernels and repacked weights where the CPU has them), 2 threads, 48 positions,
 * log-prob spread ~16 (LMI_VERBOSE=1 prints the table):
 *
 * - F32 weights: no rounded activations, the gap is float noise: ~5e-6 (llama, qwen2); gptneox and
 *   mpt ~3e-4 / 9e-4 (ggml's GELU here vs llama.cpp's). Bound 2e-3.
 * - F16 / BF16: the matmul rounds activations to f16 / bf16 on one side or both (this build has no
 *   llamafile sgemm): 1.3e-2 / 1.6e-2 max, rms <= 2.7e-3. Bound 5e-2, rms 1e-2.
 * - Block-quantized weights: activations are rounded to Q8 blocks before the dot products. Where
 *   both sides run the same kernel on bit-equal activations the gap is float noise (~5e-6: most
 *   types on llama here, Q8_0 and Q4_1 through AMX tiles on both sides); anywhere the f32
 *   activations differ in their last bits (another kernel in llama.cpp's newer ggml: Q4_0 and Q4_K
 *   here; GELU upstream: gptneox, mpt; the qwen2 biases), a value near a rounding boundary rounds the other way and moves log-probs by up
 *   to 7.4e-2 (rms <= 1.5e-2). Bound 0.15, rms 0.03: 2x the worst measured, since which types take
 *   which kernel depends on the CPU.
 *
 * That alone would not show the blocks are decoded as llama.cpp decodes them, so each quantized
 * file is also held to a relative bound: its gap to llama.cpp on the same file must be under a
 * fifth (rms) of what quantizing did to llama.cpp's own output (same model, F32 file). Measured:
 * at most a tenth (gptneox Q6_K); a mis-decoded block or scale moves log-probs by O(1).
 */
const TOLERANCE = {
  f32: { max: 2e-3, rms: 2e-3 },
  half: { max: 5e-2, rms: 1e-2 },
  quantized: { max: 0.15, rms: 0.03, relativeRms: 0.2 },
};

interface Case {
  label: string;
  arch: SyntheticArch;
  type: GgmlType;
}

const CASES: Case[] = [
  ...K_QUANTS.map((type) => ({ label: `llama ${GgmlType[type]}`, arch: 'llama' as const, type })),
  ...OTHERS.map((type) => ({ label: `llama ${GgmlType[type]}`, arch: 'llama' as const, type })),
  { label: 'qwen2 Q4_K', arch: 'qwen2', type: GgmlType.Q4_K },
  { label: 'gptneox Q6_K', arch: 'gptneox', type: GgmlType.Q6_K },
  { label: 'mpt Q3_K', arch: 'mpt', type: GgmlType.Q3_K },
  { label: 'mpt Q5_K', arch: 'mpt', type: GgmlType.Q5_K },
  { label: 'qwen2 F32', arch: 'qwen2', type: GgmlType.F32 },
  { label: 'gptneox F32', arch: 'gptneox', type: GgmlType.F32 },
  { label: 'mpt F32', arch: 'mpt', type: GgmlType.F32 },
];

describe('every weight type vs llama.cpp (weights quantized by ggml)', () => {
  let addon: NativeAddon;
  let dir: string;
  const files = new Map<string, string>();
  const oracle = new Map<string, Float32Array[]>();
  const lines: string[] = [];

  beforeAll(async () => {
    addon = await loadAddon();
    dir = mkdtempSync(path.join(os.tmpdir(), 'lmi-quant-types-'));
    const f32 = new Map<SyntheticArch, Uint8Array>();
    for (const c of CASES) {
      if (!f32.has(c.arch)) f32.set(c.arch, makeSyntheticModel(c.arch, { ...BASE, ...ARCH_BASE[c.arch] }));
      const file = path.join(dir, `${c.label.replace(/\s+/g, '-')}.gguf`);
      writeFileSync(file, quantizeModel(f32.get(c.arch)!, c.type, addon.quantize));
      files.set(c.label, file);
    }
    const results = await runOracle(
      CASES.map((c) => ({ modelPath: files.get(c.label)!, jobs: [{ kind: 'logprobs' as const, tokens: TOKENS }], threads: 2 })),
    );
    results.forEach((r, i) => {
      if (!r.ok) throw new Error(`llama.cpp refused ${CASES[i].label}: ${r.error}`);
      const job = r.results[0];
      if (job.kind !== 'logprobs') throw new Error('internal: expected log-probabilities');
      oracle.set(CASES[i].label, job.logprobs);
    });
  }, 300_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (process.env.LMI_VERBOSE) console.log(lines.join('\n'));
  });

  test('the files hold the type asked for, in every matrix', async () => {
    const { readGguf } = await import('../../lib/gguf');
    for (const c of CASES) {
      const g = await readGguf(files.get(c.label)!);
      const matrices = g.tensors.filter((t) => t.dims.length === 2 && t.dims[1] > 1);
      expect(matrices.length).toBeGreaterThan(4);
      expect(matrices.every((t) => t.type === c.type)).toBe(true);
    }
  });

  test.each(CASES.map((c) => [c.label, c] as const))('%s: log-probs match llama.cpp', async (label, c) => {
    const spec = await specFromGguf(files.get(label)!, 2);
    const model = await addon.loadModel(spec);
    const ctx = model.createContext({ nSlot: N, nArchive: 0, topKFromLayer: 0, kvType: 'f32', maxBatch: N, threads: 2 });
    const mask: Mask = { lambda: false, origin: 0, nGlobal: 0, nLocal: N, limitDistance: N };
    // A prompt as one batch, then tokens one at a time: the matmuls of one row take other kernels
    // (GEMV, AMX's VNNI loop) than those of many.
    const table = new SlotTable(N, 0);
    const nVocab = spec.hparams.nVocab;
    const logits = new Float32Array(N * nVocab);
    logits.set(await ctx.eval(table.batch(TOKENS.slice(0, PROMPT), mask, 'all')));
    for (let i = PROMPT; i < N; i++) logits.set(await ctx.eval(table.batch(TOKENS.slice(i, i + 1), mask, 'last')), i * nVocab);
    ctx.dispose();
    model.dispose();
    const ours = logSoftmaxRows(logits, nVocab);
    const gap: Gap = logProbGap(
      ours.map((r) => Float64Array.from(r)),
      oracle.get(label)!,
    );
    const effect = logProbGap(oracle.get(label)!.map((r) => Float64Array.from(r)), oracle.get(`${c.arch} F32`)!);
    lines.push(
      `${label.padEnd(13)} vs llama.cpp: max ${gap.max.toExponential(2)} rms ${gap.rms.toExponential(2)} | ` +
        `quantization's own effect (llama.cpp, vs F32): max ${effect.max.toExponential(2)} rms ${effect.rms.toExponential(2)}`,
    );
    expect(gap.spread).toBeGreaterThan(4); // distributions far from flat: agreement means something
    const kind = c.type === GgmlType.F32 ? 'f32' : c.type === GgmlType.F16 || c.type === GgmlType.BF16 ? 'half' : 'quantized';
    const bound = TOLERANCE[kind];
    const relative = kind === 'quantized' ? gap.rms / effect.rms : 0;
    const ok = gap.max < bound.max && gap.rms < bound.rms && (kind !== 'quantized' || relative < TOLERANCE.quantized.relativeRms);
    expect({ label, max: gap.max, rms: gap.rms, relative, ok }).toEqual({ label, max: gap.max, rms: gap.rms, relative, ok: true });
  });

  test('matrices move into the layout ggml computes them fastest from: AMX tiles for the types with tile kernels', async () => {
    const amx = (await systemInfo()).cpu.amxInt8 === true;
    const tileTypes = new Set<GgmlType>([GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K]);
    const { readGguf } = await import('../../lib/gguf');
    for (const c of CASES.filter((k) => k.arch === 'llama')) {
      const file = files.get(c.label)!;
      const matrices = (await readGguf(file)).tensors.filter((t) => t.dims.length === 2 && t.dims[1] > 1 && t.name !== 'token_embd.weight');
      const model = await loadModel(file, { threads: 1 });
      const layouts = model.info.weightLayouts;
      await model.dispose();
      // Every matrix is accounted for once, whatever the layout.
      expect(layouts.reduce((n, l) => n + l.tensors, 0)).toBe(matrices.length);
      const names = layouts.map((l) => l.name);
      if (amx && tileTypes.has(c.type)) expect({ label: c.label, names }).toEqual({ label: c.label, names: ['AMX'] });
      else expect({ label: c.label, amx: names.includes('AMX') }).toEqual({ label: c.label, amx: false });
    }
  });

  test('an unsupported type is a typed UNSUPPORTED error naming it (IQ2_XXS; a made-up type number)', async () => {
    const base = makeSyntheticModel('llama', { ...BASE, ...ARCH_BASE.llama });
    const rng = new Rng(5);
    const iq2 = rewriteTensors(base, (t) => {
      if (t.name !== 'blk.1.attn_k.weight') return undefined;
      const data = Uint8Array.from({ length: tensorByteLength(GgmlType.IQ2_XXS, t.dims) }, () => rng.int(0, 255));
      return { type: GgmlType.IQ2_XXS, data };
    });
    const iqFile = path.join(dir, 'iq2_xxs.gguf');
    writeFileSync(iqFile, iq2);
    const err1 = await loadModel(iqFile, { threads: 1 }).then(() => null, (e: unknown) => e);
    expect(err1).toBeInstanceOf(LmiError);
    expect((err1 as LmiError).code).toBe('UNSUPPORTED');
    expect((err1 as LmiError).message).toMatch(/blk\.1\.attn_k\.weight.*iq2_xxs/);

    // Type 77 in the tensor table of an otherwise good file.
    const bytes = Uint8Array.from(base);
    const typeField = mapFields(bytes).fields.filter((f) => f.kind === 'tensor_type')[3];
    new DataView(bytes.buffer).setUint32(typeField.offset, 77, true);
    const madeUp = path.join(dir, 'type77.gguf');
    writeFileSync(madeUp, bytes);
    const err2 = await loadModel(madeUp, { threads: 1 }).then(() => null, (e: unknown) => e);
    expect(err2).toBeInstanceOf(LmiError);
    expect((err2 as LmiError).code).toBe('UNSUPPORTED');
    expect((err2 as LmiError).message).toMatch(/77/);

    // ggml's quantizer refuses what the engine does not compute, typed too.
    expect(() => addon.quantize(GgmlType.IQ2_XXS, new Float32Array(256), 256)).toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
    expect(() => addon.quantize(GgmlType.Q4_K, new Float32Array(256), 128)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

/**
 * The segmented forward pass (native/engine/src/segmented.h: one ggml graph per layer boundary,
 * the Λ kernel called between them — what a GPU model runs) against the single-graph path (the
 * kernel as a ggml custom op), both on the CPU: same token stream, same slot table, logits
 * compared row by row. The two differ only in where the kernel is called and where the embedding
 * rows are dequantized (host vs get_rows, the same ggml row functions), so the logits are expected
 * to be bit-identical; the bound checked is 1e-5 absolute.
 *
 * Streams: prefill chunks of several sizes and single-token decode steps, a Λ ring much shorter
 * than the stream (it wraps several times), f16 and f32 K/V, top-k middle attention over an
 * archive, vanilla attention, and logits 'all' / 'last' / 'none' mixed in one stream.
 */
import { loadAddon } from '../../lib/native/addon';
import type { NativeAddon, NativeModel } from '../../lib/native/types';
import { fixturePath, STORIES } from '../gguf/helpers';
import { writeSyntheticModel, type SyntheticArch, type SyntheticModelOptions } from '../helpers/synthetic-models';
import { randomTokens } from '../reference-forward/compare';
import { SlotTable, specFromGguf, type Mask } from './spec-from-gguf';
import { maxAbsDiff, stream, type StreamOptions } from './streams';

const BOUND = 1e-5;

const lines: string[] = [];
afterAll(() => {
  if (process.env.LMI_VERBOSE) console.log(lines.join('\n'));
});

async function expectSame(label: string, model: NativeModel, o: StreamOptions): Promise<void> {
  const single = await stream(model, o);
  const segmented = await stream(model, o, { segmented: true });
  const rows = single.reduce((s, r) => s + r.length, 0);
  const diff = maxAbsDiff(single, segmented);
  lines.push(`${label}: ${single.length} evals, ${rows} logits, max |Δ| ${diff.toExponential(2)}`);
  expect({ label, diff, ok: diff <= BOUND }).toEqual({ label, diff, ok: true });
  expect(rows).toBeGreaterThan(0);
}

describe('segmented forward pass == single graph (CPU), stories260K', () => {
  let addon: NativeAddon;
  let model: NativeModel;
  beforeAll(async () => {
    addon = await loadAddon();
    model = await addon.loadModel(await specFromGguf(fixturePath(STORIES), 2));
  });
  afterAll(() => model?.dispose());

  const ring = { nGlobal: 4, nLocal: 32, seed: 3 };
  test('prefill chunks of several sizes, then decode; the Λ ring wraps; logits all; f16 K/V', async () => {
    await expectSame('stories chunks+decode f16', model, {
      ...ring, total: 260, chunks: [64, 7, 32, 1, 13, 1, 1, 48], kvType: 'f16', modes: ['all'],
    });
  });
  test('decode only, f32 K/V, logits last', async () => {
    await expectSame('stories decode f32 last', model, { ...ring, total: 120, chunks: [1], kvType: 'f32', modes: ['last'] });
  });
  test("logits 'all' / 'last' / 'none' mixed in one stream", async () => {
    await expectSame('stories mixed modes', model, {
      ...ring, total: 200, chunks: [16, 1, 5, 24, 1], kvType: 'f16', modes: ['all', 'none', 'last', 'none', 'all'],
    });
  });
  test('top-k middle attention over an archive of evicted tokens', async () => {
    await expectSame('stories top-k', model, {
      ...ring, total: 160, chunks: [8, 8, 1], kvType: 'f32', modes: ['all', 'last'], topK: { k: 5, insertAt: 16, fromLayer: 2 },
    });
  });
  test('vanilla attention', async () => {
    await expectSame('stories vanilla', model, { ...ring, total: 96, chunks: [40, 1, 9], kvType: 'f16', modes: ['all'], vanilla: true });
  });

  test('evalMany runs segmented contexts one after another, as eval() would', async () => {
    const opts = { nSlot: 64, nArchive: 0, topKFromLayer: 0, kvType: 'f16' as const, maxBatch: 16, threads: 2 };
    const mask: Mask = { lambda: true, origin: 0, nGlobal: 4, nLocal: 16, limitDistance: 16 };
    const tokensA = randomTokens(40, 11);
    const tokensB = randomTokens(40, 12);
    const solo = async (tokens: number[]): Promise<Float32Array[]> => {
      const ctx = model.createContext(opts);
      const table = new SlotTable(64, 4);
      const out: Float32Array[] = [];
      for (let at = 0; at < tokens.length; at += 8) out.push(await ctx.eval(table.batch(tokens.slice(at, at + 8), mask, 'all')));
      ctx.dispose();
      return out;
    };
    const a = model.createContext({ ...opts, segmented: true });
    const b = model.createContext({ ...opts, segmented: true });
    const ta = new SlotTable(64, 4);
    const tb = new SlotTable(64, 4);
    const gotA: Float32Array[] = [];
    const gotB: Float32Array[] = [];
    for (let at = 0; at < 40; at += 8) {
      const [la, lb] = await model.evalMany!([
        { context: a, batch: ta.batch(tokensA.slice(at, at + 8), mask, 'all') },
        { context: b, batch: tb.batch(tokensB.slice(at, at + 8), mask, 'all') },
      ]);
      gotA.push(la);
      gotB.push(lb);
    }
    a.dispose();
    b.dispose();
    expect(maxAbsDiff(await solo(tokensA), gotA)).toBeLessThanOrEqual(BOUND);
    expect(maxAbsDiff(await solo(tokensB), gotB)).toBeLessThanOrEqual(BOUND);
  });
});

describe('segmented forward pass == single graph (CPU), synthetic models', () => {
  const BASE = { seed: 41, nEmbd: 64, nLayer: 3, nHead: 4, nFF: 128, nCtx: 256 };
  const CASES: [string, SyntheticArch, SyntheticModelOptions][] = [
    ['llama GQA F32', 'llama', { ...BASE, nHeadKV: 2, weightType: 'F32' }],
    ['llama Q4_1 tied output', 'llama', { ...BASE, nHeadKV: 2, tiedOutput: true, weightType: 'Q4_1' }],
    ['qwen2 biases F16', 'qwen2', { ...BASE, nHeadKV: 2, weightType: 'F16' }],
    ['gptneox partial rotary, parallel residual, Q8_0', 'gptneox', { ...BASE, rotaryDim: 8, parallelResidual: true, weightType: 'Q8_0' }],
    ['gptneox sequential residual F32', 'gptneox', { ...BASE, parallelResidual: false, weightType: 'F32' }],
    ['mpt ALiBi 6 heads, clamp, biases, F32', 'mpt', { ...BASE, nEmbd: 96, nHead: 6, nHeadKV: 2, biases: true, clampKQV: 1.5, weightType: 'F32' }],
    ['mpt tied output BF16', 'mpt', { ...BASE, tiedOutput: true, weightType: 'BF16' }],
  ];

  let addon: NativeAddon;
  beforeAll(async () => {
    addon = await loadAddon();
  });

  test.each(CASES)('%s', async (label, arch, options) => {
    const model = await addon.loadModel(await specFromGguf(writeSyntheticModel(arch, options), 2));
    try {
      const base = { nGlobal: 4, nLocal: 16, seed: 7 };
      await expectSame(`${label} ring`, model, {
        ...base, total: 110, chunks: [24, 1, 5, 1, 16], kvType: 'f16', modes: ['all', 'last', 'none'],
      });
      await expectSame(`${label} top-k`, model, {
        ...base, total: 70, chunks: [8, 1], kvType: 'f32', modes: ['all'], topK: { k: 3, insertAt: 8, fromLayer: 1 },
      });
    } finally {
      model.dispose();
    }
  });
});

/**
 * The engine on a real model (stories260K, llama, trained at 512 tokens) against llama.cpp
 * (node-llama-cpp 3.21.1, run as a child process): log-probabilities on every position of a
 * 300-token sequence (vanilla and Λ with nLocal = 512, f16 and f32 K/V), a 200-token greedy
 * continuation, chunked prefill == one eval, 'last' == last row of 'all', and a 2,000-token
 * stream through a small Λ ring in constant memory.
 *
 * Which llama.cpp to compare with: its default CPU path (flash attention, f16 K/V cache) rounds
 * q to f16 and accumulates the attention output in f16, so its log-probs move by up to 6e-2 from
 * its own f32 path (no flash attention, f32 cache) on this model. The 1e-3 bar is therefore held
 * against that f32 path ("exact"), with our f32 K/V. Our f16 K/V differs from it only by the
 * rounding of stored keys and values; that is bounded more loosely, and checked to stay closer to
 * the f32 path than llama.cpp's own f16 configurations are.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

import { loadAddon } from '../../lib/native/addon';
import type { NativeAddon, NativeContext, NativeEvalBatch, NativeModel } from '../../lib/native/types';
import { fixturePath, STORIES } from '../gguf/helpers';
import { argmaxRow, logSoftmaxRow, SlotTable, specFromGguf, vanillaMask, type Mask } from './spec-from-gguf';

const N_TOKENS = 300;
const GREEDY = 200;
// PROVENANCE.md §1: greedy continuation of BOS + "Once upon a time" under llama.cpp.
const PROVENANCE_IDS = [
  432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265,
  282, 295, 433, 426, 385, 328, 432, 358, 394,
];

type OracleConfig = 'exact' | 'default' | 'f16NoFlash';

interface Oracle {
  tokens: number[];
  logProbs: Record<OracleConfig, number[][]>;
  greedyPrompt: number[];
  greedy: number[];
}

function runOracle(modelPath: string, text: string): Oracle {
  const request = { modelPath, contextSize: 512, text, nTokens: N_TOKENS, greedyPrompt: 'Once upon a time', greedyTokens: GREEDY };
  const r = spawnSync(process.execPath, [path.join(__dirname, 'llama-cpp-oracle.mjs')], {
    input: JSON.stringify(request),
    maxBuffer: 64 << 20,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`llama.cpp oracle failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Oracle;
}

const lambdaMask512: Mask = { lambda: true, origin: 0, nGlobal: 10, nLocal: 512, limitDistance: 512 };

describe('stories260K: engine vs llama.cpp', () => {
  let addon: NativeAddon;
  let model: NativeModel;
  let oracle: Oracle;
  let nVocab: number;
  const measured: string[] = [];

  beforeAll(async () => {
    const modelPath = fixturePath(STORIES);
    const text = readFileSync(fixturePath('text/tinystories_val.txt'), 'utf8').slice(0, 2000);
    oracle = runOracle(modelPath, text);
    addon = await loadAddon();
    const spec = await specFromGguf(modelPath, 2);
    nVocab = spec.hparams.nVocab;
    model = await addon.loadModel(spec);
  });

  afterAll(() => {
    model?.dispose();
    if (measured.length) console.log(measured.join('\n'));
  });

  function context(kvType: 'f16' | 'f32', nSlot = 512, maxBatch = 512, threads = 2): NativeContext {
    return model.createContext({ nSlot, nArchive: 0, topKFromLayer: 0, kvType, maxBatch, threads });
  }

  /** Runs the oracle's tokens through ctx in chunks; returns logits [N_TOKENS][nVocab]. */
  async function prefill(ctx: NativeContext, table: SlotTable, mask: Mask, chunks: number[]): Promise<Float32Array> {
    const out = new Float32Array(N_TOKENS * nVocab);
    let at = 0;
    for (const size of chunks) {
      const logits = await ctx.eval(table.batch(oracle.tokens.slice(at, at + size), mask, 'all'));
      expect(logits.length).toBe(size * nVocab);
      out.set(logits, at * nVocab);
      at += size;
    }
    expect(at).toBe(N_TOKENS);
    return out;
  }

  /** max |log p - log p'| over every position and every token; `logits` null means llama.cpp's `other` config. */
  function maxLogProbDiff(logits: Float32Array | null, config: OracleConfig, other: OracleConfig = 'exact'): number {
    let worst = 0;
    for (let r = 0; r < N_TOKENS; r++) {
      const ours = logits ? logSoftmaxRow(logits, r, nVocab) : oracle.logProbs[other][r];
      const theirs = oracle.logProbs[config][r];
      for (let v = 0; v < nVocab; v++) worst = Math.max(worst, Math.abs(ours[v] - theirs[v]));
    }
    return worst;
  }

  test('the oracle matches PROVENANCE §1', () => {
    expect(oracle.tokens).toHaveLength(N_TOKENS);
    expect(oracle.logProbs.exact[0]).toHaveLength(nVocab);
    expect(oracle.greedyPrompt).toEqual([1, 403, 407, 261, 378]);
    expect(oracle.greedy.slice(0, PROVENANCE_IDS.length)).toEqual(PROVENANCE_IDS);
  });

  test.each([['vanilla'], ['lambda']] as const)(
    '%s attention, f32 K/V: log-probs within 1e-3 of llama.cpp (f32 path) on all 300 positions',
    async (kind) => {
      const ctx = context('f32');
      const mask = kind === 'vanilla' ? vanillaMask(512) : lambdaMask512;
      const logits = await prefill(ctx, new SlotTable(512, 0), mask, [N_TOKENS]);
      const diff = maxLogProbDiff(logits, 'exact');
      measured.push(`max |log p - log p_llama.cpp(f32 path)| ${kind} f32 K/V: ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(1e-3);
      ctx.dispose();
    },
  );

  test.each([['vanilla'], ['lambda']] as const)(
    '%s attention, f16 K/V: log-probs within the f16 storage error of llama.cpp on all 300 positions',
    async (kind) => {
      const ctx = context('f16');
      const mask = kind === 'vanilla' ? vanillaMask(512) : lambdaMask512;
      const logits = await prefill(ctx, new SlotTable(512, 0), mask, [N_TOKENS]);
      const vsExact = maxLogProbDiff(logits, 'exact');
      const vsDefault = maxLogProbDiff(logits, 'default');
      const llamaF16VsExact = Math.min(maxLogProbDiff(null, 'exact', 'default'), maxLogProbDiff(null, 'exact', 'f16NoFlash'));
      measured.push(
        `max |log p - log p_llama.cpp| ${kind} f16 K/V: vs f32 path ${vsExact.toExponential(2)}, ` +
          `vs default (flash, f16 cache) ${vsDefault.toExponential(2)}; llama.cpp's own f16 configs vs its f32 path: ` +
          `>= ${llamaF16VsExact.toExponential(2)}`,
      );
      expect(vsExact).toBeLessThan(5e-2);
      expect(vsExact).toBeLessThan(llamaF16VsExact);
      expect(vsDefault).toBeLessThan(1e-1);
      ctx.dispose();
    },
  );

  test.each([
    ['f32', 1e-4],
    // f16: a row computed in a different batch differs in the last float bits before it is rounded
    // to f16, which now and then flips one f16 ulp of a stored key or value.
    ['f16', 2e-2],
  ] as const)('%s K/V: prefill in 7 chunks of varied sizes == one eval (within %s)', async (kv, tolerance) => {
    const whole = await prefill(context(kv), new SlotTable(512, 0), lambdaMask512, [N_TOKENS]);
    const chunked = await prefill(context(kv), new SlotTable(512, 0), lambdaMask512, [1, 7, 64, 3, 100, 25, 100]);
    let worst = 0;
    for (let i = 0; i < whole.length; i++) worst = Math.max(worst, Math.abs(whole[i] - chunked[i]));
    measured.push(`max |logit chunked - logit whole| ${kv} K/V: ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(tolerance);
  });

  test("'last' == the last row of 'all'; 'none' returns no logits", async () => {
    const run = async (logits: NativeEvalBatch['logits']) => {
      const ctx = context('f32');
      const table = new SlotTable(512, 0);
      const none = await ctx.eval(table.batch(oracle.tokens.slice(0, 200), lambdaMask512, 'none'));
      expect(none.length).toBe(0);
      const out = await ctx.eval(table.batch(oracle.tokens.slice(200, N_TOKENS), lambdaMask512, logits));
      ctx.dispose();
      return out;
    };
    const all = await run('all');
    const last = await run('last');
    expect(all.length).toBe((N_TOKENS - 200) * nVocab);
    expect(last.length).toBe(nVocab);
    const allRow = all.subarray((N_TOKENS - 201) * nVocab);
    let worst = 0;
    for (let v = 0; v < nVocab; v++) worst = Math.max(worst, Math.abs(last[v] - allRow[v]));
    expect(worst).toBeLessThan(1e-4);
  });

  async function greedy(threads: number, kv: 'f16' | 'f32'): Promise<{ ids: number[]; tokensPerSecond: number }> {
    const ctx = context(kv, 512, 512, threads);
    const table = new SlotTable(512, 0);
    let logits = await ctx.eval(table.batch(oracle.greedyPrompt, lambdaMask512, 'last'));
    const ids: number[] = [];
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < GREEDY; i++) {
      const next = argmaxRow(logits, 0, nVocab);
      ids.push(next);
      if (i + 1 < GREEDY) logits = await ctx.eval(table.batch([next], lambdaMask512, 'last'));
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    ctx.dispose();
    return { ids, tokensPerSecond: (GREEDY - 1) / seconds };
  }

  test('200-token greedy continuation of BOS + "Once upon a time" is identical to llama.cpp', async () => {
    const f16 = await greedy(1, 'f16');
    expect(f16.ids.slice(0, PROVENANCE_IDS.length)).toEqual(PROVENANCE_IDS);
    expect(f16.ids).toEqual(oracle.greedy);
    const f32 = await greedy(2, 'f32');
    expect(f32.ids).toEqual(oracle.greedy);
    const two = await greedy(2, 'f16');
    measured.push(
      `decode tokens/s (stories260K, f16 K/V, 1 token per eval): 1 thread ${f16.tokensPerSecond.toFixed(0)}, ` +
        `2 threads ${two.tokensPerSecond.toFixed(0)}`,
    );
  });

  test('Λ ring (nGlobal 4, nLocal 64, chunk 16) streams 2,000 tokens in nGlobal + nLocal slots, equal to Λ over the whole history', async () => {
    const nGlobal = 4;
    const nLocal = 64;
    const chunk = 16;
    const total = 2000;
    // No slot beyond the window: a chunk overwrites ring keys its own earlier tokens still see,
    // which the engine handles by attending the chunk before writing it.
    const nSlot = nGlobal + nLocal;
    const ring = context('f32', nSlot, chunk);
    // The same Λ mask over a cache that keeps every token (slot = position): the kernel must pick
    // the same keys through the slot table, so the two agree to float rounding.
    const full = context('f32', total, chunk);
    const bytes = ring.kvBytes();
    // 5 layers x (K + V) x nSlot x 4 KV heads x 8 dims x 4 bytes
    expect(bytes).toBe(5 * 2 * nSlot * 4 * 8 * 4);
    expect(context('f16', nSlot, chunk).kvBytes()).toBe(bytes / 2);
    const mask: Mask = { lambda: true, origin: 0, nGlobal, nLocal, limitDistance: nLocal };
    const ringTable = new SlotTable(nSlot, nGlobal);
    const fullTable = new SlotTable(total, 0);
    const stream = Array.from({ length: 7 }, () => oracle.tokens).flat(); // 2,100 tokens of text (BOS every 300)
    let fed = 0;
    let steps = 0;
    let worst = 0;
    while (fed < total) {
      // alternate chunked prefill and single-token decode steps
      const size = steps % 3 === 2 ? 1 : Math.min(chunk, total - fed);
      const tokens = stream.slice(fed, fed + size);
      const logits: NativeEvalBatch['logits'] = steps % 2 ? 'all' : 'last';
      const a = await ring.eval(ringTable.batch(tokens, mask, logits));
      const b = await full.eval(fullTable.batch(tokens, mask, logits));
      for (let i = 0; i < a.length; i++) {
        if (!Number.isFinite(a[i])) throw new Error(`non-finite logit at token ${fed}`);
        worst = Math.max(worst, Math.abs(a[i] - b[i]));
      }
      fed += tokens.length;
      steps++;
      expect(ring.kvBytes()).toBe(bytes);
    }
    expect(ringTable.position).toBe(total);
    measured.push(`Λ ring vs Λ over the whole history, 2,000 tokens, f32 K/V: max |logit diff| ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-3);
    ring.dispose();
    full.dispose();
  });
});

/**
 * Top-k middle attention through the archive: a ring whose evicted tokens are copied to archive
 * slots (layers >= topKFromLayer only) must give what the reference forward pass gives with the
 * whole history and the same Λ + top-k rule; a small Λ ring without top-k must match the reference's
 * Λ too. stories260K, f32 K/V.
 */
import { readFileSync } from 'node:fs';

import { parseGguf } from '../../lib/gguf';
import { loadAddon } from '../../lib/native/addon';
import type { NativeModel } from '../../lib/native/types';
import { fixturePath, STORIES } from '../gguf/helpers';
import { ReferenceModel } from '../reference/forward';
import { logProbGap, randomTokens } from '../reference-forward/compare';
import { logSoftmaxRows, SlotTable, specFromGguf, type Mask } from './spec-from-gguf';

const TOTAL = 160;
const CHUNK = 8;
const N_GLOBAL = 4;
const N_LOCAL = 32;
const TOPK = { k: 5, insertAt: 16 };
const FROM_LAYER = 2;

describe('Λ ring with top-k middle attention vs the reference forward pass', () => {
  let model: NativeModel;
  let reference: ReferenceModel;
  const tokens = randomTokens(TOTAL, 9);

  beforeAll(async () => {
    const path = fixturePath(STORIES);
    const bytes = new Uint8Array(readFileSync(path));
    reference = new ReferenceModel(parseGguf(bytes), bytes);
    model = await (await loadAddon()).loadModel(await specFromGguf(path, 1));
  });
  afterAll(() => model?.dispose());

  async function stream(nArchive: number, topK: { k: number; insertAt: number }): Promise<Float32Array[]> {
    const nSlot = N_GLOBAL + N_LOCAL; // the ring holds the window and no more
    const ctx = model.createContext({ nSlot, nArchive, topKFromLayer: nArchive > 0 ? FROM_LAYER : 0, kvType: 'f32', maxBatch: CHUNK, threads: 1 });
    const mask: Mask = { lambda: true, origin: 0, nGlobal: N_GLOBAL, nLocal: N_LOCAL, limitDistance: N_LOCAL };
    const table = new SlotTable(nSlot, N_GLOBAL, nArchive);
    const rows: Float32Array[] = [];
    const bytes = ctx.kvBytes();
    for (let at = 0; at < TOTAL; ) {
      const size = at % 24 === 16 ? 1 : CHUNK; // chunks and single-token steps
      const logits = await ctx.eval(table.batch(tokens.slice(at, at + size), mask, 'all', topK));
      rows.push(...logSoftmaxRows(logits, 512));
      at += size;
      expect(ctx.kvBytes()).toBe(bytes);
    }
    ctx.dispose();
    return rows;
  }

  test('Λ ring without top-k', async () => {
    const expected = reference.forward(tokens, { attention: { nGlobal: N_GLOBAL, nLocal: N_LOCAL, limitDistance: N_LOCAL } });
    const gap = logProbGap(expected, await stream(0, { k: 0, insertAt: 0 }));
    expect(gap.max).toBeLessThan(1e-3);
  });

  test(`top-k (k ${TOPK.k}, from layer ${FROM_LAYER}, insertAt ${TOPK.insertAt}) over an archive of evicted tokens`, async () => {
    const expected = reference.forward(tokens, {
      attention: { nGlobal: N_GLOBAL, nLocal: N_LOCAL, limitDistance: N_LOCAL, topK: { ...TOPK, fromLayer: FROM_LAYER } },
    });
    const without = reference.forward(tokens, { attention: { nGlobal: N_GLOBAL, nLocal: N_LOCAL, limitDistance: N_LOCAL } });
    const got = await stream(TOTAL, TOPK);
    const gap = logProbGap(expected, got);
    expect(gap.max).toBeLessThan(1e-3);
    // and top-k changed something, so the comparison has teeth
    expect(logProbGap(without, got).max).toBeGreaterThan(1e-2);
  });
});

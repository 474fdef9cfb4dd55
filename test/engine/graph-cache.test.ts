/**
 * Graph reuse: a context caches built and allocated graphs per (tokens, logits mode) and only
 * rewrites their inputs. Cycling through more shapes than the cache holds (16), so graphs are
 * evicted, rebuilt and re-planned in the shared compute buffer, must still give the reference
 * forward pass's log-probabilities at every position. stories260K, f32 K/V, vanilla attention.
 */
import { readFileSync } from 'node:fs';

import { parseGguf } from '../../lib/gguf';
import { loadAddon } from '../../lib/native/addon';
import type { NativeEvalBatch } from '../../lib/native/types';
import { fixturePath, STORIES } from '../gguf/helpers';
import { logSoftmax, ReferenceModel } from '../reference/forward';
import { randomTokens } from '../reference-forward/compare';
import { logSoftmaxRow, SlotTable, specFromGguf, vanillaMask } from './spec-from-gguf';

test('cycling 24 batch shapes through a 16-graph cache matches the reference at every position', async () => {
  const path = fixturePath(STORIES);
  const bytes = new Uint8Array(readFileSync(path));
  const modes: NativeEvalBatch['logits'][] = ['all', 'last', 'none'];
  const plan: { size: number; logits: NativeEvalBatch['logits'] }[] = [];
  for (let round = 0; round < 2; round++)
    for (let size = 1; size <= 8; size++) for (const logits of modes) plan.push({ size: ((size + round * 3) % 8) + 1, logits });
  const total = plan.reduce((s, p) => s + p.size, 0);
  const tokens = randomTokens(total, 3);
  const expected = new ReferenceModel(parseGguf(bytes), bytes).forward(tokens).map((row) => logSoftmax(row));

  const model = await (await loadAddon()).loadModel(await specFromGguf(path, 1));
  const ctx = model.createContext({ nSlot: total, nArchive: 0, topKFromLayer: 0, kvType: 'f32', maxBatch: 8, threads: 2 });
  const table = new SlotTable(total, 0);
  const mask = vanillaMask(total);
  let at = 0;
  let worst = 0;
  for (const { size, logits } of plan) {
    const out = await ctx.eval(table.batch(tokens.slice(at, at + size), mask, logits));
    const rows = logits === 'all' ? size : logits === 'last' ? 1 : 0;
    expect(out.length).toBe(rows * 512);
    for (let r = 0; r < rows; r++) {
      const pos = logits === 'all' ? at + r : at + size - 1;
      const ours = logSoftmaxRow(out, r, 512);
      for (let v = 0; v < 512; v++) worst = Math.max(worst, Math.abs(ours[v] - expected[pos][v]));
    }
    at += size;
  }
  expect(worst).toBeLessThan(1e-3);
  ctx.dispose();
  model.dispose();
});

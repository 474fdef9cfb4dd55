import assert from 'node:assert';
import { attention, systemInfo } from 'lm-infinite';

const v = Float32Array.from({ length: 8 }, (_, d) => -(d + 1));
const out = await attention({
  q: new Float32Array(8).fill(1), k: new Float32Array(8).fill(1), v,
  nHead: 1, nHeadKV: 1, headDim: 8, slotPositions: [0], queryPositions: [2 ** 40],
  encoding: { kind: 'alibi', slopes: [0.5] }, attention: { nLocal: 16, nGlobal: 4 },
});
assert.deepStrictEqual(Array.from(out), Array.from(v));
const info = await systemInfo();
assert.match(info.ggmlVersion, /^\d+\.\d+\.\d+/);
console.log('esm ok', info.ggmlVersion, info.attentionSimd);

// A consumer's script: one key visible to one query, so the output must equal that key's value.
const assert = require('assert');
const { attention, InvalidArgumentError } = require('lm-infinite');

(async () => {
  const v = Float32Array.from({ length: 8 }, (_, d) => d + 0.5);
  const out = await attention({
    q: new Float32Array(8).fill(1), k: new Float32Array(8).fill(1), v,
    nHead: 1, nHeadKV: 1, headDim: 8, slotPositions: [3], queryPositions: [4],
    encoding: { kind: 'rope' }, attention: { nLocal: 16 },
  });
  assert.deepStrictEqual(Array.from(out), Array.from(v));
  await assert.rejects(attention({ nHead: 0 }), InvalidArgumentError);
  console.log('cjs ok');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});

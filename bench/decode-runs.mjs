#!/usr/bin/env node
// Decode runs against one native call per token, side by side in one process: greedy decoding
// after a prompt, `tokensPerCall: 1` and the default alternating, fresh session each time. Reports
// tokens/s and the share of wall time outside the engine's forward passes (JS session, sampling,
// N-API, thread hand-offs), from session.stats.
//
//   npm run build && node bench/decode-runs.mjs [--model path.gguf] [--threads 2] [--prompt 1024]
//        [--tokens 512] [--reps 5] [--n-local 2048]
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadModel } from '../dist/index.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = process.env.LMI_FIXTURES ?? path.resolve(here, '..', '..', 'shared', 'fixtures');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const modelPath = arg('model', path.join(fixtures, 'stories260K', 'stories260K.gguf'));
const threads = Number(arg('threads', '2'));
const promptTokens = Number(arg('prompt', '1024'));
const tokens = Number(arg('tokens', '512'));
const reps = Number(arg('reps', '5'));
const nLocal = Number(arg('n-local', '2048'));

const model = await loadModel(modelPath, { threads });
const nVocab = model.tokenizer.vocabSize;
const banned = {};
for (let id = 0; id < nVocab; id++) if (model.tokenizer.isEog(id)) banned[id] = -Infinity;
const prompt = Int32Array.from({ length: promptTokens }, (_, i) => 3 + ((i * 7919 + 13) % (nVocab - 3)));

async function measure(tokensPerCall) {
  const s = model.createSession({ threads, attention: { nGlobal: 10, nLocal, limitDistance: nLocal } });
  await s.append(prompt);
  const before = s.stats;
  const t0 = process.hrtime.bigint();
  let n = 0;
  for await (const _ of s.generate({ maxTokens: tokens, temperature: 0, logitBias: banned, tokensPerCall })) n++;
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = s.stats;
  s.dispose();
  const compute = after.computeSeconds - before.computeSeconds;
  return { tokensPerSecond: n / wall, outside: 1 - compute / wall, calls: after.calls - before.calls };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

await measure(1); // warm-up: JIT and the compute thread
await measure(64);
const rows = { 1: [], 64: [] };
for (let r = 0; r < reps; r++) for (const k of [1, 64]) rows[k].push(await measure(k));
await model.dispose();

const pct = (x) => `${(100 * x).toFixed(1)}%`;
console.log(`${path.basename(modelPath)} · prompt ${promptTokens} · ${tokens} greedy tokens · Λ nLocal ${nLocal} · ${threads} thread(s) · ${reps} reps (median, range)`);
console.log('| tokens per call | decode tok/s | outside the engine | native calls |');
console.log('|---|---:|---:|---:|');
for (const k of [1, 64]) {
  const t = rows[k].map((x) => x.tokensPerSecond);
  const o = rows[k].map((x) => x.outside);
  console.log(`| ${k === 1 ? '1 (one eval per token)' : '64 (default)'} | ${median(t).toFixed(0)} (${Math.min(...t).toFixed(0)}–${Math.max(...t).toFixed(0)}) | ${pct(median(o))} (${pct(Math.min(...o))}–${pct(Math.max(...o))}) | ${median(rows[k].map((x) => x.calls))} |`);
}
console.log(`speed-up (medians): ${(median(rows[64].map((x) => x.tokensPerSecond)) / median(rows[1].map((x) => x.tokensPerSecond))).toFixed(2)}×`);

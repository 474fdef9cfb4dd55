#!/usr/bin/env node
// Sampling cost per token: lib/sampling's Sampler (TypeScript) against the same Sampler given the
// addon's native sampler (what sessions use), side by side, on rows of several vocabulary sizes
// with the default options (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05) and a 64-token
// penalty window.
//
//   npm run build && node bench/sampler.mjs [--reps 200]
import { createRequire } from 'node:module';

import { Sampler } from '../dist/index.mjs';

const i = process.argv.indexOf('--reps');
const reps = i >= 0 ? Number(process.argv[i + 1]) : 200;
const addon = createRequire(import.meta.url)(process.env.LMI_ADDON_PATH ?? '../build/Release/lm_infinite.node');

const timePerToken = (sampler, rows, recent) => {
  for (let k = 0; k < 20; k++) sampler.sample(rows[k % rows.length], recent);
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < reps; k++) sampler.sample(rows[k % rows.length], recent);
  return Number(process.hrtime.bigint() - t0) / 1e6 / reps;
};

console.log(`| vocabulary | TypeScript (ms/token) | native (ms/token) | ratio |`);
console.log(`|---:|---:|---:|---:|`);
for (const nVocab of [512, 32000, 152064]) {
  const rows = Array.from({ length: 8 }, (_, k) => Float32Array.from({ length: nVocab }, (_, j) => 5 * Math.sin(j * 0.37 + k)));
  const recent = Array.from({ length: 64 }, (_, j) => (j * 97) % nVocab);
  const ts = timePerToken(new Sampler({ seed: 1 }, nVocab), rows, recent);
  const native = timePerToken(new Sampler({ seed: 1 }, nVocab, addon.sampleToken), rows, recent);
  console.log(`| ${nVocab} | ${ts.toFixed(3)} | ${native.toFixed(3)} | ${(ts / native).toFixed(1)}× |`);
}

#!/usr/bin/env node
// Two or more builds of the attention bench (bench/attention.cpp) run in turns (the order rotated
// from run to run), decode only, on the 91M models' shape (16 query / 4 KV heads, head dim 64) and
// stories260K's (8 / 4, head dim 8): one thread through runPartition, head-major K/V, keys stored
// turned, as the engine's CPU cache holds them. Reports per build and window the medians over the
// runs of Λ's and vanilla's time per layer and of Λ's time over vanilla's at equal window (what the
// global keys and the window's alignment to turn bases add), and each build's fastest runs.
//
//   node bench/attention-ab.mjs --bins old-bench,build/native/attention/lmi_bench_attention
//        [--reps 5] [--layers 1]
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const bins = arg('bins', 'build/native/attention/lmi_bench_attention').split(',').map((b) => path.resolve(b));
const reps = Number(arg('reps', '5'));
const layers = arg('layers', '1');
const shapes = {
  '91M': ['--heads', '16', '--kv-heads', '4', '--head-dim', '64'],
  stories260K: ['--heads', '8', '--kv-heads', '4', '--head-dim', '8'],
};
const common = ['--decode-only', '--threads', '1', '--partition', '--head-major', '--turned-keys', '--layers', layers, '--json'];

// [shape][window][build] -> [{ lam, van }], µs per layer
const runs = Object.fromEntries(Object.keys(shapes).map((shape) => [shape, new Map()]));
for (let r = 0; r < reps; r++) {
  // Each run starts from the next build, so that no build always runs first (or after the same
  // one): on this shared machine the position in a run has shifted timings by 20-30%.
  const order = bins.map((_, i) => bins[(i + r) % bins.length]);
  for (const bin of order) {
    for (const [shape, args] of Object.entries(shapes)) {
      const out = JSON.parse(execFileSync(bin, [...args, ...common], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
      for (const row of out.rows) {
        if (!runs[shape].has(row.size)) runs[shape].set(row.size, bins.map(() => []));
        runs[shape].get(row.size)[bins.indexOf(bin)].push({ lam: row.lambda.seconds * 1e6, van: row.vanilla.seconds * 1e6 });
      }
    }
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const f = (x) => x.toFixed(2);
// The minimum too: other jobs on the machine only ever add time, and the fastest run of each build
// is what separates builds a few percent apart when the medians drift with the load.
let md = `${reps} runs per build, builds in turns (rotated), ${layers} layer cache(s); µs per layer, medians (and minima)\n\n`;
md += '| shape | window | build | Λ | vanilla | Λ − vanilla | Λ min | vanilla min |\n|---|---:|---|---:|---:|---:|---:|---:|\n';
for (const [shape, byWindow] of Object.entries(runs)) {
  for (const window of [...byWindow.keys()].sort((a, b) => a - b)) {
    byWindow.get(window).forEach((v, b) => {
      const build = path.relative(process.cwd(), bins[b]);
      md += `| ${shape} | ${window} | ${build} | ${f(median(v.map((x) => x.lam)))} | ${f(median(v.map((x) => x.van)))} | ${f(median(v.map((x) => x.lam - x.van)))} | ${f(Math.min(...v.map((x) => x.lam)))} | ${f(Math.min(...v.map((x) => x.van)))} |\n`;
    });
  }
}
process.stdout.write(md);

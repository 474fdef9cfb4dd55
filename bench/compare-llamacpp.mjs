#!/usr/bin/env node
// lm-infinite against llama.cpp (node-llama-cpp 3.21.1, CPU), on the same GGUF files, the same
// thread count, in one run: each measurement is a fresh child process per engine (so peak resident
// memory is each engine's own), engines alternating, repeated; medians of the repetitions and of the
// per-pair ratios are reported.
//
//   npm run build && npx sucrase-node bench/compare/make-models.ts      (the synthetic ~91M models)
//   node bench/compare-llamacpp.mjs [--threads N] [--reps 3] [--models stories,F16,Q8_0,Q4_0]
//        [--long stories,Q4_0] [--long-reps 1] [--flat-reps 3] [--flat-tokens 16] [--flat-rounds 24]
//        [--flat-only] [--kv-type f16|q8_0]
//        [--json out.json] [--write]
//
// Scenarios
//   window  inside the training window (context <= 2k): prefill a 1,024-token prompt, decode 64
//           tokens at position 1k, then (fresh sequence) prefill a 2,048-token prompt and decode 256. lm-infinite runs
//           Λ (nLocal = limitDistance = 2048, nGlobal 10), which inside the window is vanilla attention.
//           llama.cpp runs twice, flash attention on (its default, 'auto') and off, and the better of the
//           two is the baseline of each ratio.
//   long    one stream: prefill to 8k, decode 32 at 8k, prefill to 32k, decode 32 at 32k, and for
//           lm-infinite on to 128k and decode 32 there. lm-infinite: Λ with nLocal 2048; llama.cpp:
//           vanilla attention in a 32k+ context (its default flash attention).
//   flat    lm-infinite alone, the flat-cost target side by side: one process holds a Λ session
//           around position 1k and one around 32k and decodes 16 tokens in each in turn, 24 rounds,
//           centred on the position (the near session's window spans ~830 to ~1,220 keys), in
//           --flat-reps processes (3); the median (and quartiles) of all rounds' 32k / 1k rate
//           ratios. Short rounds keep each pair's two rates within ~0.1 s of each other, so that a
//           shared VM's drifting speed lands on both (6 rounds of 64 tokens, measured against
//           these, scattered three times as widely); --flat-tokens / --flat-rounds change them
//           (their product sets the window's span). Run for the --long models; --flat-only runs
//           nothing else.
// K/V cache: f16 for both engines (the default), or with --kv-type q8_0 ggml's 8-bit Q8_0 blocks for
// both (llama.cpp: experimentalKvCacheKeyType / ValueType; it quantizes a V cache only with flash
// attention, so its flash-attention-off runs are skipped and FA on is the baseline).
// Decode rates are tokens / total time of greedy decoding (the median step was used until
// lm-infinite began handing out several tokens per native call); prefill rates are prompt tokens / time. --write appends a section to
// bench/RESULTS.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const fixtures = process.env.LMI_FIXTURES ?? path.resolve(repo, '..', 'shared', 'fixtures');

function arg(name, fallback) {
  const k = process.argv.indexOf(`--${name}`);
  return k >= 0 && k + 1 < process.argv.length ? process.argv[k + 1] : fallback;
}
const flag = (name) => process.argv.includes(`--${name}`);

/** Physical cores: distinct (package, core) pairs in sysfs; the logical CPU count elsewhere. */
function physicalCores() {
  try {
    const base = '/sys/devices/system/cpu';
    const ids = new Set();
    for (const d of readdirSync(base)) {
      if (!/^cpu\d+$/.test(d)) continue;
      const t = path.join(base, d, 'topology');
      ids.add(`${readFileSync(path.join(t, 'physical_package_id'), 'utf8').trim()}:${readFileSync(path.join(t, 'core_id'), 'utf8').trim()}`);
    }
    if (ids.size > 0) return ids.size;
  } catch {}
  return os.availableParallelism?.() ?? os.cpus().length;
}

const threads = Number(arg('threads', String(physicalCores())));
const reps = Number(arg('reps', '3'));
const longReps = Number(arg('long-reps', '1'));
const flatOnly = process.argv.includes('--flat-only');
const kvType = arg('kv-type', 'f16');
if (kvType !== 'f16' && kvType !== 'q8_0') throw new Error(`--kv-type must be f16 or q8_0, got ${kvType}`);
const wanted = flatOnly ? [] : arg('models', 'stories,F16,Q8_0,Q4_0').split(',').filter(Boolean);
const longWanted = arg('long', 'stories,Q4_0').split(',').filter(Boolean);
const NVOCAB = 512; // every compared model carries the stories260K vocabulary

function models() {
  const list = JSON.parse(execFileSync('npx', ['sucrase-node', path.join(here, 'compare', 'make-models.ts')], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  const out = { stories: { name: 'stories260K', path: path.join(fixtures, 'stories260K', 'stories260K.gguf'), params: 292_000 } };
  for (const m of list) out[m.type] = { name: `llama-91M ${m.type}`, path: m.path, params: m.params };
  return out;
}

function runWorker(script, job) {
  const r = spawnSync(process.execPath, [path.join(here, 'compare', script), JSON.stringify(job)], { cwd: repo, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${script} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  const line = r.stdout.trim().split('\n').pop();
  return JSON.parse(line);
}

const median = (xs) => quantile(xs, 0.5);
/** The q-quantile of the finite values, interpolated between neighbours (NaN when there are none). */
function quantile(xs, q) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}

const WINDOW_PLAN = [
  { kind: 'prefill', tokens: 1024, label: 'prefill 1k' },
  { kind: 'decode', tokens: 64, label: 'decode @1k' },
  { kind: 'reset' },
  { kind: 'prefill', tokens: 2048, label: 'prefill 2k' },
  { kind: 'decode', tokens: 256, label: 'decode @2k' },
];
const longPlan = (withFar) => [
  { kind: 'prefill', tokens: 8192, label: 'prefill to 8k' },
  { kind: 'decode', tokens: 32, label: 'decode @8k' },
  { kind: 'prefill', tokens: 32768, label: 'prefill to 32k' },
  { kind: 'decode', tokens: 32, label: 'decode @32k' },
  ...(withFar ? [{ kind: 'prefill', tokens: 131072, piece: 16384, label: 'prefill to 128k' }, { kind: 'decode', tokens: 32, label: 'decode @128k' }] : []),
];
const LAMBDA = { nGlobal: 10, nLocal: 2048, limitDistance: 2048 };

const ours = (model, plan) => runWorker('worker-lmi.mjs', { model: model.path, threads, nVocab: NVOCAB, attention: LAMBDA, chunkSize: 512, kvType, seed: 1, plan });
const FLAT = { near: 1024, far: 32768, tokens: Number(arg('flat-tokens', '16')), rounds: Number(arg('flat-rounds', '24')) };
for (const k of ['tokens', 'rounds'])
  if (!Number.isSafeInteger(FLAT[k]) || FLAT[k] < 1) throw new Error(`--flat-${k} must be a positive integer, got ${FLAT[k]}`);
const flatReps = Number(arg('flat-reps', '3'));
const oursFlat = (model) => runWorker('worker-lmi.mjs', { model: model.path, threads, nVocab: NVOCAB, attention: LAMBDA, chunkSize: 512, kvType, seed: 1, flat: FLAT });
const theirs = (model, plan, contextSize, flashAttention) =>
  runWorker('worker-llamacpp.mjs', { model: model.path, threads, nVocab: NVOCAB, contextSize, batchSize: 512, flashAttention, kvType, seed: 1, plan });

const byLabel = (result) => Object.fromEntries(result.phases.filter((p) => p.label).map((p) => [p.label, p]));
const log = (s) => process.stderr.write(`${s}\n`);

const all = models();
const report = { schema: 'lm-infinite/compare-llamacpp@1', date: new Date().toISOString(), threads, kvType, reps, cpu: os.cpus()[0]?.model, window: {}, long: {} };

for (const key of wanted) {
  const model = all[key];
  if (!model || !existsSync(model.path)) throw new Error(`no model ${key} (${model?.path})`);
  const runs = { lmi: [], llamaFa: [], llamaNoFa: [] };
  for (let r = 0; r < reps; r++) {
    runs.lmi.push(ours(model, WINDOW_PLAN));
    runs.llamaFa.push(theirs(model, WINDOW_PLAN, 4096, 'auto'));
    if (kvType === 'f16') runs.llamaNoFa.push(theirs(model, WINDOW_PLAN, 4096, false));
    log(`${model.name} window rep ${r + 1}/${reps} done`);
  }
  const metrics = {};
  for (const label of ['prefill 1k', 'decode @1k', 'prefill 2k', 'decode @2k']) {
    const a = runs.lmi.map((x) => byLabel(x)[label].tokensPerSecond);
    const b = runs.llamaFa.map((x) => byLabel(x)[label].tokensPerSecond);
    const c = runs.llamaNoFa.map((x) => byLabel(x)[label].tokensPerSecond);
    const best = b.map((v, i) => Math.max(v, c[i] ?? 0));
    metrics[label] = { lmi: median(a), llamaFa: median(b), llamaNoFa: median(c), ratio: median(a.map((v, i) => v / best[i])) };
  }
  // The layers above the engine (JS session, sampling, N-API, worker-thread hand-off): decode wall
  // time minus the engine's own compute time, as a share of the wall time. Decode @1k is the
  // process's first generate() (64 tokens: the JIT still compiling); @2k runs 256 tokens after it.
  const overhead = (label) => median(runs.lmi.map((x) => byLabel(x)[label]?.overhead?.fraction));
  metrics.overhead = { lmi: overhead('decode @1k') };
  metrics.overheadWarm = { lmi: overhead('decode @2k') };
  metrics.peakRss = { lmi: median(runs.lmi.map((x) => x.final.peakRss)), llamaFa: median(runs.llamaFa.map((x) => x.final.peakRss)), llamaNoFa: median(runs.llamaNoFa.map((x) => x.final.peakRss)) };
  report.window[key] = { model: model.name, params: model.params, metrics, runs };
}

for (const key of longWanted) {
  const model = all[key];
  const runs = { lmi: [], llama: [] };
  for (let r = 0; r < (flatOnly ? 0 : longReps); r++) {
    runs.lmi.push(ours(model, longPlan(true)));
    runs.llama.push(theirs(model, longPlan(false), 32768 + 512, 'auto'));
    log(`${model.name} long rep ${r + 1}/${longReps} done`);
  }
  const pick = (list, label, field = 'tokensPerSecond') => median(list.map((x) => byLabel(x)[label]?.[field]));
  const prefill32k = (x) => {
    const p = byLabel(x);
    return 32768 / (p['prefill to 8k'].seconds + p['prefill to 32k'].seconds);
  };
  const metrics = flatOnly ? {} : {
    'decode @8k': { lmi: pick(runs.lmi, 'decode @8k'), llama: pick(runs.llama, 'decode @8k') },
    'decode @32k': { lmi: pick(runs.lmi, 'decode @32k'), llama: pick(runs.llama, 'decode @32k') },
    'decode @128k': { lmi: pick(runs.lmi, 'decode @128k'), llama: null },
    'prefill 32k': { lmi: median(runs.lmi.map(prefill32k)), llama: median(runs.llama.map(prefill32k)) },
    'rss @32k': { lmi: pick(runs.lmi, 'decode @32k', 'rss'), llama: pick(runs.llama, 'decode @32k', 'rss') },
    'rss @128k': { lmi: pick(runs.lmi, 'decode @128k', 'rss'), llama: null },
    kvBytes: { lmi: median(runs.lmi.map((x) => x.kvBytes)), llama: null },
  };
  for (const m of Object.values(metrics)) if (m.lmi !== null && m.llama) m.ratio = m.lmi / m.llama;
  const flat = [];
  for (let r = 0; r < flatReps; r++) {
    flat.push(oursFlat(model));
    log(`${model.name} flat rep ${r + 1}/${flatReps} done`);
  }
  const rounds = flat.flatMap((x) => x.flat.rounds);
  metrics.flat = {
    near: median(rounds.map((x) => x.near)),
    far: median(rounds.map((x) => x.far)),
    ratio: median(rounds.map((x) => x.far / x.near)),
    q1: quantile(rounds.map((x) => x.far / x.near), 0.25),
    q3: quantile(rounds.map((x) => x.far / x.near), 0.75),
  };
  report.long[key] = { model: model.name, params: model.params, metrics, runs, flat };
}

const f = (x, d = 0) => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));
const mib = (x) => (Number.isFinite(x) ? `${(x / 2 ** 20).toFixed(0)} MiB` : 'n/a');
let md = `| model | metric | lm-infinite | llama.cpp FA on | llama.cpp FA off | ratio (vs better) |\n|---|---|---:|---:|---:|---:|\n`;
for (const w of Object.values(report.window)) {
  for (const [label, m] of Object.entries(w.metrics)) {
    if (label === 'peakRss') md += `| ${w.model} | peak RSS | ${mib(m.lmi)} | ${mib(m.llamaFa)} | ${mib(m.llamaNoFa)} | |\n`;
    else if (label === 'overhead') md += `| ${w.model} | decode @1k time outside the engine (JS + N-API + hand-off; first generate) | ${f(100 * m.lmi, 1)}% | | | |\n`;
    else if (label === 'overheadWarm') md += `| ${w.model} | decode @2k time outside the engine (256 tokens, warm) | ${f(100 * m.lmi, 1)}% | | | |\n`;
    else md += `| ${w.model} | ${label} (tok/s) | ${f(m.lmi, 1)} | ${f(m.llamaFa, 1)} | ${f(m.llamaNoFa, 1)} | **${f(m.ratio, 2)}×** |\n`;
  }
}
if (Object.keys(report.long).length > 0) {
  md += `\n| model | metric | lm-infinite Λ (nLocal 2k) | llama.cpp vanilla | ratio |\n|---|---|---:|---:|---:|\n`;
  for (const l of Object.values(report.long)) {
    for (const [label, m] of Object.entries(l.metrics)) {
      if (label === 'flat') {
        md += `| ${l.model} | Λ decode @32k / @1k, side by side (${flatReps} × ${FLAT.rounds} rounds of ${FLAT.tokens} tokens; tok/s ${f(m.far, 1)} / ${f(m.near, 1)}; rounds' quartiles ${f(m.q1, 2)}–${f(m.q3, 2)}) | **${f(m.ratio, 2)}×** | | |\n`;
        continue;
      }
      const isMem = label.startsWith('rss') || label === 'kvBytes';
      const v = (x) => (isMem ? mib(x) : f(x, 1));
      md += `| ${l.model} | ${label}${isMem ? '' : ' (tok/s)'} | ${v(m.lmi)} | ${m.llama === null ? 'n/a' : v(m.llama)} | ${m.ratio ? `**${f(m.ratio, 2)}×**` : ''} |\n`;
    }
    const window = report.window[Object.keys(report.window).find((k) => report.window[k].model === l.model)];
    for (const at of ['decode @1k', 'decode @2k']) {
      const flat = l.metrics['decode @32k']?.lmi / window?.metrics[at]?.lmi;
      if (Number.isFinite(flat)) md += `| ${l.model} | Λ decode @32k / Λ ${at} | ${f(flat, 2)}× | | |\n`;
    }
  }
}
process.stdout.write(md);
const jsonOut = arg('json', '');
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(report, null, 2));
if (flag('write')) {
  const cmd = `node bench/compare-llamacpp.mjs ${process.argv.slice(2).filter((a) => a !== '--write').join(' ')}`.trim();
  appendFileSync(path.join(repo, 'bench', 'RESULTS.md'), `\n### llama.cpp side by side (${report.date.slice(0, 10)}, ${threads} threads, ${reps} reps, ${report.cpu})\n\n\`${cmd}\`\n\n${md}`);
}

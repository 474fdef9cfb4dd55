#!/usr/bin/env node
// An infinite stream in constant memory: push a million tokens (by default) through stories260K
// (trained at 512 tokens) in one Λ session, scoring every token, and watch resident memory, K/V
// bytes, NLL and throughput against position.
//
//   npm run build:ts && npm run bench:stream -- [--tokens N] [--chunk N] [--threads N] [--kv f16|f32]
//                                               [--model path] [--text path] [--json]
//
// The text (TinyStories validation) is tokenized once and its ids cycled: the stream never ends,
// and the model sees ordinary text at every position. Checks, each printed with its verdict
// (exit status 1 if one fails):
//   - resident memory (RSS, after a GC) at 10k, 100k and the last checkpoint within 5% of each other;
//   - K/V bytes identical at every checkpoint (fixed at session creation);
//   - every token's NLL finite (no NaN or Inf anywhere in the stream);
//   - throughput does not fall with position: the last 100k window's tokens per CPU-second at least
//     85% of the first's. CPU time, because wall-clock tokens/s on a shared machine moves by 30% with
//     the other jobs (it is printed too); a cost that grew with position would lower both, steadily
//     (attention over the whole history would cost ~10x more per token by 1M).
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { loadModel } from '../dist/index.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = process.env.LMI_FIXTURES ?? path.resolve(here, '..', '..', 'shared', 'fixtures');

function parseArgs(argv) {
  const o = {
    tokens: 1_000_000,
    chunk: 4096,
    threads: 2,
    kv: 'f16',
    nLocal: 512,
    nGlobal: 10,
    window: 100_000,
    warmup: 50_000,
    model: path.join(fixtures, 'stories260K', 'stories260K.gguf'),
    text: path.join(fixtures, 'text', 'tinystories_val.txt'),
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    const int = () => {
      const v = Number(next());
      if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${a} needs a positive integer`);
      return v;
    };
    if (a === '--tokens') o.tokens = int();
    else if (a === '--chunk') o.chunk = int();
    else if (a === '--threads') o.threads = int();
    else if (a === '--n-local') o.nLocal = int();
    else if (a === '--window') o.window = int();
    else if (a === '--warmup') o.warmup = Number(next());
    else if (a === '--kv') o.kv = next();
    else if (a === '--model') o.model = next();
    else if (a === '--text') o.text = next();
    else if (a === '--json') o.json = true;
    else if (a === '--help' || a === '-h') {
      console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 7).join('\n').replace(/^\/\/ ?/gm, ''));
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (o.kv !== 'f16' && o.kv !== 'f32') throw new Error('--kv must be f16 or f32');
  if (!Number.isSafeInteger(o.warmup) || o.warmup < 0) throw new Error('--warmup needs an integer >= 0');
  return o;
}

const gc = (() => {
  setFlagsFromString('--expose-gc');
  const f = runInNewContext('gc');
  return typeof f === 'function' ? f : () => undefined;
})();

/** Resident memory after a full GC, so garbage not yet collected does not count. */
function rss() {
  gc();
  gc();
  return process.memoryUsage.rss();
}

/** Linux: resident anonymous memory (heaps, K/V, buffers) and file-backed pages (code, the mapped model); null elsewhere. */
function rssSplit() {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (key) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) * 1024;
    const anon = kb('RssAnon');
    const file = kb('RssFile');
    return Number.isFinite(anon) && Number.isFinite(file) ? { anon, file } : null;
  } catch {
    return null;
  }
}

const MiB = (b) => (b / 2 ** 20).toFixed(1);
// Thousands separators without toLocaleString: its first call pages in ICU's locale data (~5 MiB
// of the node binary), which would show up as RSS growth between checkpoints.
const thousands = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const model = await loadModel(o.model, { threads: o.threads });
  const ids = model.tokenizer.encode(readFileSync(o.text, 'utf8'), { addSpecial: false });
  if (ids.length < o.chunk) throw new Error(`the text has only ${ids.length} tokens, fewer than one chunk`);
  const sessionOptions = { attention: { nGlobal: o.nGlobal, nLocal: o.nLocal }, kvType: o.kv, chunkSize: 512, threads: o.threads };

  // Warm-up, on a session of its own, thrown away: the process pages in the code the stream runs
  // (V8's optimizing compiler and GC, ggml and kernel paths, allocator arenas) before memory is
  // measured, so the checkpoints compare the stream's own footprint.
  if (o.warmup > 0) {
    const warm = model.createSession(sessionOptions);
    const part = new Int32Array(o.chunk);
    for (let done = 0; done < o.warmup; ) {
      const n = Math.min(part.length, o.warmup - done);
      for (let j = 0; j < n; j++) part[j] = ids[(done + j) % ids.length];
      await warm.score(part.subarray(0, n));
      done += n;
    }
    rss();
    rssSplit();
    warm.dispose();
  }

  const session = model.createSession(sessionOptions);

  // Checkpoints: 10k, 100k, then every window, and the end.
  const marks = new Set([10_000, 100_000]);
  for (let t = o.window; t < o.tokens; t += o.window) marks.add(t);
  marks.add(o.tokens);
  const checkpoints = [];
  const windows = [];
  const chunk = new Int32Array(o.chunk);
  let cursor = 0; // into ids
  let done = 0;
  let nonFinite = 0;
  let firstBad = -1;
  let windowStart = performance.now();
  let windowCpu = process.cpuUsage();
  let windowTokens = 0;
  let windowNll = 0;
  let windowCount = 0;
  const t0 = performance.now();

  // BOS first, as a text stream would start.
  const bos = model.tokenizer.bos;
  if (bos !== null) {
    await session.append([bos]);
    done = 1;
  }
  const sortedMarks = [...marks].sort((a, b) => a - b);
  let nextMark = 0;
  while (done < o.tokens) {
    // Stop exactly at the next checkpoint so every sample is taken at its position.
    const n = Math.min(o.chunk, o.tokens - done, sortedMarks[nextMark] - done);
    for (let k = 0; k < n; k++) {
      chunk[k] = ids[cursor];
      cursor = (cursor + 1) % ids.length;
    }
    const r = await session.score(chunk.subarray(0, n));
    for (let k = 0; k < r.nll.length; k++) {
      const x = r.nll[k];
      if (!Number.isFinite(x)) {
        nonFinite++;
        if (firstBad < 0) firstBad = r.startPosition + k;
      } else {
        windowNll += x;
        windowCount++;
      }
    }
    done += n;
    windowTokens += n;
    if (done % o.window === 0 || done === o.tokens) {
      const ms = performance.now() - windowStart;
      const cpu = process.cpuUsage(windowCpu);
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      windows.push({ end: done, tokensPerSecond: (windowTokens / ms) * 1000, tokensPerCpuSecond: windowTokens / cpuSeconds, meanNll: windowNll / Math.max(1, windowCount), rss: rss(), ...rssSplit() });
      windowStart = performance.now();
      windowCpu = process.cpuUsage();
      windowTokens = 0;
      windowNll = 0;
      windowCount = 0;
    }
    if (done === sortedMarks[nextMark]) {
      if (done === 10_000 || done === 100_000 || done === o.tokens)
        checkpoints.push({ position: done, rss: rss(), ...rssSplit(), kvBytes: session.kvBytes, heapUsed: process.memoryUsage().heapUsed });
      nextMark++;
      if (!o.json) process.stderr.write(`\r${thousands(done)} tokens, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
  }
  if (!o.json) process.stderr.write('\n');
  const seconds = (performance.now() - t0) / 1000;

  // Verdicts.
  const rssValues = checkpoints.map((c) => c.rss);
  const rssSpread = (Math.max(...rssValues) - Math.min(...rssValues)) / Math.min(...rssValues);
  const kvConstant = checkpoints.every((c) => c.kvBytes === checkpoints[0].kvBytes);
  const full = windows.filter((w) => w.end % o.window === 0);
  const ratio = (key) => (full.length >= 2 ? full[full.length - 1][key] / full[0][key] : 1);
  const speedRatio = ratio('tokensPerSecond');
  const cpuRatio = ratio('tokensPerCpuSecond');
  const checks = [
    { name: `RSS within 5% across ${checkpoints.map((c) => c.position).join(' / ')}`, ok: rssSpread <= 0.05, value: `${(rssSpread * 100).toFixed(2)}%` },
    { name: 'kvBytes identical at every checkpoint', ok: kvConstant, value: `${checkpoints[0].kvBytes} bytes` },
    { name: 'every NLL finite', ok: nonFinite === 0, value: nonFinite === 0 ? 'all finite' : `${nonFinite} non-finite, first at ${firstBad}` },
    {
      name: 'throughput does not fall: tokens per CPU-second of the last window >= 85% of the first',
      ok: cpuRatio >= 0.85,
      value: `${(cpuRatio * 100).toFixed(0)}% (wall-clock tokens/s: ${(speedRatio * 100).toFixed(0)}%)`,
    },
  ];

  const result = {
    model: path.basename(o.model),
    tokens: o.tokens,
    seconds,
    settings: { nGlobal: o.nGlobal, nLocal: o.nLocal, kvType: o.kv, chunk: o.chunk, threads: o.threads, warmup: o.warmup, textTokens: ids.length },
    checkpoints,
    windows,
    checks,
  };
  if (o.json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    console.log(`${result.model}: ${thousands(o.tokens)} tokens in ${seconds.toFixed(1)} s; Λ nGlobal ${o.nGlobal}, nLocal ${o.nLocal}, ` +
      `K/V ${o.kv}, ${o.threads} threads, chunks of ${o.chunk}, text of ${ids.length} tokens cycled, after a ${o.warmup}-token warm-up`);
    console.log('');
    console.log('position   |  RSS MiB | anon MiB | file MiB | kvBytes   | JS heap MiB');
    for (const c of checkpoints)
      console.log(`${thousands(c.position).padStart(10)} | ${MiB(c.rss).padStart(8)} | ${(c.anon ? MiB(c.anon) : '-').padStart(8)} | ` +
        `${(c.file ? MiB(c.file) : '-').padStart(8)} | ${String(c.kvBytes).padEnd(9)} | ${MiB(c.heapUsed).padStart(8)}`);
    console.log('');
    console.log('window (tokens)         | tokens/s | tok/CPU-s | mean NLL | RSS MiB at its end (anon + file)');
    let start = 0;
    for (const w of windows) {
      console.log(`${`${thousands(start)}–${thousands(w.end)}`.padEnd(23)} | ${w.tokensPerSecond.toFixed(0).padStart(8)} | ${w.tokensPerCpuSecond.toFixed(0).padStart(9)} | ${w.meanNll.toFixed(4).padStart(8)} | ${MiB(w.rss).padStart(8)}${w.anon ? ` (${MiB(w.anon)} + ${MiB(w.file)})` : ''}`);
      start = w.end;
    }
    console.log('');
    for (const c of checks) console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.value}`);
  }
  session.dispose();
  await model.dispose();
  if (!checks.every((c) => c.ok)) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 2;
});

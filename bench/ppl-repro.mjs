#!/usr/bin/env node
// The perplexity reproduction (bench/RESULTS.md, "Perplexity against position"): stories260K
// (trained at 512 tokens) on tinystories_val.txt (~393k tokens) as one stream.
//
//   ours       `lm-infinite ppl --modes lambda,vanilla` (dist/cli.cjs): Λ (nGlobal 10, nLocal =
//              limitDistance = 512) over the whole stream, vanilla over the first --vanilla-max tokens
//   llama.cpp  bench/ppl-llamacpp.mjs (node-llama-cpp): context shift at 512, fresh 512-token windows,
//              and vanilla (no shift) over the same first tokens
//
// Both engines score the same token ids: they are made once with our tokenizer (BOS + the text),
// and the llama.cpp script checks that llama.cpp's own tokenization gives the same ids.
//
// Usage (from the repository root, after `npm run build`):
//   node bench/ppl-repro.mjs [--threads 1] [--max-tokens N] [--vanilla-max 8192] [--reuse]
//                            [--variants nGlobal:nLocal:limitDistance,...]
// --reuse takes llama.cpp's per-token NLL from bench/out/ when it is there (from an earlier run).
// --variants also scores other Λ settings (lambda mode only) and compares them with the shift.
// The exit code is 1 when a check of the main setting fails (variants are informational).
// Writes bench/out/ppl-repro.json, bench/ppl-tinystories.svg, and prints the tables as markdown.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rel = (p) => path.relative(root, p) || '.';
const fixtures = process.env.LMI_FIXTURES ?? path.resolve(root, '..', 'shared', 'fixtures');
const modelPath = path.join(fixtures, 'stories260K', 'stories260K.gguf');
const textPath = path.join(fixtures, 'text', 'tinystories_val.txt');
const out = path.join(root, 'bench', 'out');
const svgPath = path.join(root, 'bench', 'ppl-tinystories.svg');
if (!existsSync(modelPath) || !existsSync(textPath)) throw new Error(`fixtures not found under ${fixtures}; set LMI_FIXTURES`);
if (!existsSync(path.join(root, 'dist', 'cli.cjs'))) throw new Error('dist/cli.cjs is missing: run `npm run build` first');

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const k = args.indexOf(name);
  return k >= 0 ? Number(args[k + 1]) : fallback;
};
const threads = opt('--threads', 1);
const maxTokens = opt('--max-tokens', undefined);
const vanillaMax = opt('--vanilla-max', 8192);
const reuse = args.includes('--reuse');
const variantsArg = args.includes('--variants') ? args[args.indexOf('--variants') + 1] : '';
const variants = variantsArg.split(',').filter((v) => v).map((v) => {
  const [nGlobal, nLocal, limitDistance] = v.split(':').map(Number);
  if (![nGlobal, nLocal, limitDistance].every(Number.isInteger)) throw new Error(`--variants: "${v}" is not nGlobal:nLocal:limitDistance`);
  return { nGlobal, nLocal, limitDistance };
});
mkdirSync(out, { recursive: true });

// 1. The token stream, with our tokenizer.
const lmi = createRequire(import.meta.url)(path.join(root, 'dist', 'index.cjs'));
const idsPath = path.join(out, 'tinystories-ids.i32');
{
  const model = await lmi.loadModel(modelPath, { threads: 1 });
  const t = model.tokenizer;
  const list = t.encode(readFileSync(textPath, 'utf8'), { addSpecial: false });
  if (t.addBos && t.bos !== null) list.unshift(t.bos);
  const ids = Int32Array.from(maxTokens ? list.slice(0, maxTokens) : list);
  writeFileSync(idsPath, Buffer.from(ids.buffer));
  await model.dispose();
}
const nTokens = readFileSync(idsPath).byteLength / 4;

function runNode(argv, what) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status})`);
  process.stderr.write(`${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return JSON.parse(r.stdout);
}

// 2. Ours.
const oursArgv = [
  'dist/cli.cjs', 'ppl', '-m', modelPath, textPath, '--modes', 'lambda,vanilla',
  '--n-global', '10', '--n-local', '512', '--limit-distance', '512', '--vanilla-max', String(vanillaMax),
  '--threads', String(threads), '--json', ...(maxTokens ? ['--max-tokens', String(maxTokens)] : []),
];
const ours = runNode(oursArgv, 'lm-infinite ppl');
if (ours.tokens !== nTokens) throw new Error(`lm-infinite scored ${ours.tokens} tokens, the id file has ${nTokens}`);
const oursMode = (m) => ours.modes.find((x) => x.mode === m);

// 3. llama.cpp.
function llamacpp(mode, extra = []) {
  const nllPath = path.join(out, `llamacpp-${mode}.f32`);
  const infoPath = path.join(out, `llamacpp-${mode}.json`);
  const wanted = mode === 'vanilla' ? Math.min(nTokens, vanillaMax) : nTokens;
  let info = reuse && existsSync(infoPath) ? JSON.parse(readFileSync(infoPath, 'utf8')) : null;
  if (info === null || info.tokens !== wanted) {
    info = runNode(['bench/ppl-llamacpp.mjs', '--model', modelPath, '--ids', idsPath, '--text', textPath, '--mode', mode,
      '--threads', String(threads), '--out', nllPath, ...extra], `llama.cpp ${mode}`);
    writeFileSync(infoPath, JSON.stringify(info));
  }
  if (info.tokenizationMatches !== true) throw new Error(`llama.cpp tokenizes the text differently (${mode})`);
  const b = readFileSync(nllPath);
  return { info, nll: new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4) };
}
const shift = llamacpp('shift', ['--context', '512']);
const windows = llamacpp('windows', ['--context', '512']);
const vanilla = llamacpp('vanilla', ['--max-tokens', String(Math.min(nTokens, vanillaMax))]);

// 4. Buckets. Ours come per power-of-two bucket (sums and counts), so coarser buckets that are
// unions of them are exact; llama.cpp's are summed from its per-token NLL (entry k = position k + 1).
function merge(buckets, starts, length) {
  const edges = starts.filter((s) => s < length);
  return edges.map((s, k) => {
    const e = k + 1 < edges.length ? edges[k + 1] : length;
    const inside = buckets.filter((b) => b.start >= s && b.end <= e);
    if (inside.reduce((a, b) => a + (b.end - b.start), 0) !== e - s) throw new Error(`bucket ${s}–${e} is not a union of ours`);
    const count = inside.reduce((a, b) => a + b.count, 0);
    const sum = inside.reduce((a, b) => a + b.sumNll, 0);
    return { start: s, end: e, count, nll: count ? sum / count : null };
  });
}
function bucketize(nll, starts, length) {
  const edges = starts.filter((s) => s < length);
  return edges.map((s, k) => {
    const e = k + 1 < edges.length ? edges[k + 1] : length;
    let sum = 0;
    let count = 0;
    for (let p = Math.max(1, s); p < e && p - 1 < nll.length; p++) {
      sum += nll[p - 1];
      count++;
    }
    return { start: s, end: e, count, nll: count ? sum / count : null };
  });
}
const label = (n) => (n >= 1024 && n % 1024 === 0 ? `${n / 1024}k` : String(n));
const range = (b, end) => `${label(b.start)}–${b.end === end ? 'end' : label(b.end)}`;
const f3 = (v) => (v === null ? '-' : v.toFixed(3));

const issueStarts = [0, 512, 1024, 4096, 16384, 65536, 131072, 262144];
const pow2 = [0];
for (let s = 512; s < nTokens; s *= 2) pow2.push(s);

const lambdaRows = merge(oursMode('lambda').buckets, issueStarts, nTokens);
const shiftRows = bucketize(shift.nll, issueStarts, nTokens);
const windowRows = bucketize(windows.nll, issueStarts, nTokens);
const tolLambda = 0.01;
const lambdaTable = lambdaRows.map((b, k) => {
  const d = b.nll - shiftRows[k].nll;
  return { positions: range(b, nTokens), tokens: b.count, lambda: b.nll, llamaShift: shiftRows[k].nll, freshWindows: windowRows[k].nll, lambdaMinusShift: d, pass: d <= tolLambda };
});

const variantTable = variants.map((v) => {
  const argv = ['dist/cli.cjs', 'ppl', '-m', modelPath, textPath, '--modes', 'lambda', '--n-global', String(v.nGlobal), '--n-local', String(v.nLocal),
    '--limit-distance', String(v.limitDistance), '--threads', String(threads), '--json', ...(maxTokens ? ['--max-tokens', String(maxTokens)] : [])];
  const doc = runNode(argv, `lm-infinite ppl Λ ${v.nGlobal}:${v.nLocal}:${v.limitDistance}`);
  const rows = merge(doc.modes[0].buckets, issueStarts, nTokens);
  return { ...v, nll: rows.map((b) => b.nll), minusShift: rows.map((b, k) => b.nll - shiftRows[k].nll), pass: rows.every((b, k) => b.nll - shiftRows[k].nll <= tolLambda) };
});

const vStarts = pow2.filter((s) => s < Math.min(nTokens, vanillaMax));
const vLength = Math.min(nTokens, vanillaMax);
const oursVanilla = merge(oursMode('vanilla').buckets.filter((b) => b.end <= vLength), vStarts, vLength);
const llamaVanilla = bucketize(vanilla.nll, vStarts, vLength);
const tolVanilla = 0.05;
const vanillaTable = oursVanilla.map((b, k) => {
  const d = b.nll - llamaVanilla[k].nll;
  return { positions: range(b, -1), tokens: b.count, ours: b.nll, llama: llamaVanilla[k].nll, diff: d, pass: Math.abs(d) <= tolVanilla };
});

// 5. The plot: Λ, llama.cpp's context shift and fresh windows, per power-of-two bucket.
const plotRows = [
  ['Λ (lm-infinite; nGlobal 10, nLocal = limitDistance = 512)', merge(oursMode('lambda').buckets, pow2, nTokens)],
  ['llama.cpp context shift (n_ctx 512)', bucketize(shift.nll, pow2, nTokens)],
  ['fresh 512-token windows (llama.cpp)', bucketize(windows.nll, pow2, nTokens)],
].flatMap(([series, rows]) => rows.filter((b) => b.nll !== null).map((b) => ({ series, start: b.start, end: b.end, mid: (b.start + b.end) / 2, nll: b.nll })));
const spec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: `stories260K on tinystories_val.txt (${nTokens} tokens, one stream): NLL against position`,
  width: 560,
  height: 320,
  data: { values: plotRows },
  mark: { type: 'line', point: true },
  encoding: {
    x: { field: 'mid', type: 'quantitative', scale: { type: 'log', nice: false, domain: [Math.min(...plotRows.map((r) => r.mid)) / 1.3, Math.max(...plotRows.map((r) => r.mid)) * 1.3] }, title: 'position (tokens; bucket midpoint, log scale)' },
    y: { field: 'nll', type: 'quantitative', scale: { zero: false }, title: 'NLL (nats/token)' },
    color: { field: 'series', type: 'nominal', title: null, sort: null, legend: { orient: 'top-left', labelLimit: 400 } },
  },
};
const vega = await import('vega');
const vegaLite = await import('vega-lite');
const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
writeFileSync(svgPath, await view.toSVG());
view.finalize();

const lambda = oursMode('lambda');
const result = {
  tokens: nTokens,
  threads,
  ours: { command: `node ${oursArgv.map((a) => (a.startsWith('/') ? rel(a) : a)).join(' ')}`, lambda: { kvBytes: lambda.kvBytes, rssBytes: lambda.rssBytes, seconds: lambda.seconds }, vanillaSeconds: oursMode('vanilla').seconds, peakRssBytes: ours.peakRssBytes },
  llamacpp: { shift: shift.info, windows: windows.info, vanilla: vanilla.info },
  lambdaTable,
  vanillaTable,
  variantTable,
};
writeFileSync(path.join(out, 'ppl-repro.json'), `${JSON.stringify(result, null, 2)}\n`);

const md = [];
md.push(`Λ vs llama.cpp, NLL (nats/token) per position bucket; pass: Λ ≤ context shift + ${tolLambda}`, '');
md.push('| positions | tokens | Λ (ours) | llama.cpp shift | fresh windows | Λ − shift | pass |', '| --- | ---: | ---: | ---: | ---: | ---: | --- |');
for (const r of lambdaTable) md.push(`| ${r.positions} | ${r.tokens} | ${f3(r.lambda)} | ${f3(r.llamaShift)} | ${f3(r.freshWindows)} | ${r.lambdaMinusShift >= 0 ? '+' : ''}${r.lambdaMinusShift.toFixed(3)} | ${r.pass ? 'yes' : 'NO'} |`);
if (variantTable.length > 0) {
  md.push('', 'Other Λ settings (nGlobal:nLocal:limitDistance), NLL per bucket and, below it, minus the context shift\'s', '');
  md.push(`| setting | ${lambdaTable.map((r) => r.positions).join(' | ')} | pass |`, `| --- | ${lambdaTable.map(() => '---:').join(' | ')} | --- |`);
  const signed = (d) => `${d >= 0 ? '+' : ''}${d.toFixed(3)}`;
  for (const v of variantTable) {
    md.push(`| ${v.nGlobal}:${v.nLocal}:${v.limitDistance} | ${v.nll.map(f3).join(' | ')} | ${v.pass ? 'yes' : 'NO'} |`);
    md.push(`| − shift | ${v.minusShift.map(signed).join(' | ')} | |`);
  }
}
md.push('', `Vanilla, first ${vLength} tokens; pass: |ours − llama.cpp| ≤ ${tolVanilla}`, '');
md.push('| positions | tokens | vanilla (ours) | vanilla (llama.cpp) | difference | pass |', '| --- | ---: | ---: | ---: | ---: | --- |');
for (const r of vanillaTable) md.push(`| ${r.positions} | ${r.tokens} | ${f3(r.ours)} | ${f3(r.llama)} | ${r.diff >= 0 ? '+' : ''}${r.diff.toFixed(4)} | ${r.pass ? 'yes' : 'NO'} |`);
md.push('', `Λ: K/V ${lambda.kvBytes} bytes; RSS ${(lambda.rssBytes.first / 2 ** 20).toFixed(1)} MiB after the first chunk, ${(lambda.rssBytes.last / 2 ** 20).toFixed(1)} MiB after the last; ${lambda.seconds.toFixed(1)} s.`);
md.push(`Peak RSS of the lm-infinite ppl process (Λ over the whole stream, then vanilla over ${vLength} tokens): ${(ours.peakRssBytes / 2 ** 20).toFixed(1)} MiB.`);
md.push(`llama.cpp: shift ${shift.info.seconds.toFixed(1)} s, windows ${windows.info.seconds.toFixed(1)} s, vanilla ${vanilla.info.seconds.toFixed(1)} s (threads ${threads}).`);
process.stdout.write(`${md.join('\n')}\n`);
const ok = lambdaTable.every((r) => r.pass) && vanillaTable.every((r) => r.pass);
process.stderr.write(ok ? 'all checks pass\n' : 'SOME CHECKS FAIL\n');
process.exitCode = ok ? 0 : 1;

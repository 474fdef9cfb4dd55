#!/usr/bin/env node
// Decode speed of two or more builds of the native addon, or K/V cache types (--kv-types
// f16,q8_0; every build with every type), alternating in one run: greedy decoding
// in a Λ session (nLocal 2048) after prompts that leave its window half full (1k) and full (2k+),
// each measurement in a fresh process (the addon is loaded once per process, from LMI_ADDON_PATH).
// Reports medians, each build's full/half ratio (the flat-cost ratio of #5) and the ratio of
// every row to the first.
//
// --n-local gives each prompt its own nLocal (one value, or one per prompt): with
// `--prompts 2100,2100 --n-local 1024,2048` both columns decode with a full window, of 1,034 and
// 2,058 keys, so that neither column is a window still filling up.
//
//   npm run build && node bench/decode-ab.mjs --addons old.node,build/Release/lm_infinite.node
//        [--model path.gguf] [--threads 2] [--tokens 256] [--reps 3] [--prompts 1000,2100]
//        [--n-local 2048] [--kv-types f16]
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const threads = Number(arg('threads', '2'));
const tokens = Number(arg('tokens', '256'));

if (process.argv.includes('--child')) {
  const { loadModel } = await import('../dist/index.mjs');
  const promptTokens = Number(arg('prompt', '1000'));
  const nLocal = Number(arg('n-local', '2048'));
  const model = await loadModel(arg('model'), { threads });
  const nVocab = model.tokenizer.vocabSize;
  const banned = {};
  for (let id = 0; id < nVocab; id++) if (model.tokenizer.isEog(id)) banned[id] = -Infinity;
  const prompt = Int32Array.from({ length: promptTokens }, (_, i) => 3 + ((i * 7919 + 13) % (nVocab - 3)));
  const s = model.createSession({ threads, kvType: arg('kv-type', 'f16'), attention: { nGlobal: 10, nLocal, limitDistance: nLocal } });
  await s.append(prompt);
  const t0 = process.hrtime.bigint();
  let n = 0;
  for await (const _ of s.generate({ maxTokens: tokens, temperature: 0, logitBias: banned })) n++;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  s.dispose();
  await model.dispose();
  process.stdout.write(JSON.stringify({ tokensPerSecond: n / seconds }));
  process.exit(0);
}

const fixtures = process.env.LMI_FIXTURES ?? path.resolve(here, '..', '..', 'shared', 'fixtures');
const modelPath = arg('model', path.join(fixtures, 'stories260K', 'stories260K.gguf'));
const builds = arg('addons', path.join(here, '..', 'build', 'Release', 'lm_infinite.node'))
  .split(',')
  .map((a) => path.resolve(a));
const kvTypes = arg('kv-types', 'f16').split(',');
// The rows: every build with every K/V type.
const addons = builds.flatMap((addon) => kvTypes.map((kvType) => ({ addon, kvType })));
const label = (v) => `${path.relative(process.cwd(), v.addon)}${kvTypes.length > 1 ? ` · K/V ${v.kvType}` : ''}`;
const prompts = arg('prompts', '1000,2100').split(',').map(Number);
const nLocals = arg('n-local', '2048').split(',').map(Number);
if (nLocals.length !== 1 && nLocals.length !== prompts.length) throw new Error('--n-local: one value, or one per prompt');
const nLocalOf = (p) => nLocals[nLocals.length === 1 ? 0 : p];
const reps = Number(arg('reps', '3'));

const runs = addons.map(() => prompts.map(() => []));
for (let r = 0; r < reps; r++) {
  for (let a = 0; a < addons.length; a++) {
    for (let p = 0; p < prompts.length; p++) {
      const out = execFileSync(
        process.execPath,
        [fileURLToPath(import.meta.url), '--child', '--model', modelPath, '--prompt', String(prompts[p]),
          '--n-local', String(nLocalOf(p)), '--threads', String(threads), '--tokens', String(tokens), '--kv-type', addons[a].kvType],
        { env: { ...process.env, LMI_ADDON_PATH: addons[a].addon }, encoding: 'utf8' },
      );
      runs[a][p].push(JSON.parse(out).tokensPerSecond);
    }
  }
}

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(`${path.basename(modelPath)} · Λ nLocal ${nLocals.join(', ')} · ${tokens} greedy tokens after prompts of ${prompts.join(', ')} · ${threads} thread(s) · ${reps} reps (median, range)`);
const column = (p) => (nLocals.length === 1 ? `decode after ${prompts[p]}` : `decode after ${prompts[p]}, nLocal ${nLocalOf(p)}`);
console.log(`| build | ${prompts.map((_, p) => `${column(p)} (tok/s)`).join(' | ')} | last / first column | vs first row |`);
console.log(`|---|${prompts.map(() => '---:').join('|')}|---:|---|`);
const med = runs.map((byPrompt) => byPrompt.map(median));
for (let a = 0; a < addons.length; a++) {
  const cells = runs[a].map((xs, p) => `${med[a][p].toFixed(1)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`);
  const flat = (med[a][prompts.length - 1] / med[a][0]).toFixed(2);
  const vs = med[a].map((m, p) => `${(m / med[0][p]).toFixed(2)}×`).join(' / ');
  console.log(`| ${label(addons[a])} | ${cells.join(' | ')} | ${flat}× | ${vs} |`);
}

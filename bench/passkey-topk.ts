/**
 * Diagnostics behind bench/RESULTS.md "Passkey retrieval": why Λ + top-k does not retrieve
 * passkey-tiny's key from outside its window.
 *
 *   npx sucrase-node bench/passkey-topk.ts scan [--lengths 1024] [--depths 0,0.5] [--keys 4]
 *       [--n-local 128,256] [--from 0,1,2,3] [--insert-at 16,64,128,200] [--k 1,5,20]
 *     Mean NLL (nats) of each answer digit under Λ + top-k for every setting of the grid
 *     (teacher-forced, Session.score on prompt + answer; chance is ln 10 ≈ 2.30).
 *
 *   npx sucrase-node bench/passkey-topk.ts reference [--lengths 512] [--depths 0,0.5] [--keys 1]
 *       [--n-local 256] [--from 0] [--insert-at 64] [--k 1]
 *     Greedy answers of the engine (f16 and f32 K/V) beside those of the plain reference of the
 *     rule (test/reference/forward, double precision, dense): Λ alone and Λ + top-k. Slow (the
 *     reference is O(n²) in plain TypeScript: ~15 s per 512-token prompt).
 *
 * Prompts and keys come from lib/eval/passkey.ts (planPasskey with --seed, default 1), so they are
 * those of `lm-infinite passkey` with the same lengths, depths and seed. Model: passkey-tiny from
 * the fixtures (LMI_FIXTURES, default ../shared/fixtures), or --model.
 */
import { readFileSync } from 'fs';
import * as path from 'path';

import { buildPasskeyPrompt, planPasskey } from '../lib/eval/passkey';
import { parseGguf } from '../lib/gguf';
import { loadModel, type Model } from '../lib/model';
import type { LambdaAttentionOptions } from '../lib/session';
import { ReferenceModel } from '../test/reference/forward';

function arg(name: string, fallback: string): string {
  const k = process.argv.indexOf(`--${name}`);
  return k >= 0 && k + 1 < process.argv.length ? process.argv[k + 1] : fallback;
}
const numbers = (name: string, fallback: string): number[] => arg(name, fallback).split(',').map(Number);

const fixtures = process.env.LMI_FIXTURES ?? path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const modelPath = arg('model', path.join(fixtures, 'passkey', 'passkey-tiny.gguf'));

function prompts(model: Model, keysPerCell: number) {
  const plan = planPasskey({ lengths: numbers('lengths', '1024'), depths: numbers('depths', '0,0.5'), samples: keysPerCell, seed: Number(arg('seed', '1')) });
  return plan.map((s) => {
    const p = buildPasskeyPrompt(model.tokenizer, s);
    // The answer as the model should continue: a space token and the digits (tok512: "▁" + one token per digit).
    const answer = model.tokenizer.encode(String(s.key), { addSpecial: false });
    return { spec: s, prompt: p, answer };
  });
}

async function scan(model: Model): Promise<void> {
  const items = prompts(model, Number(arg('keys', '4')));
  process.stdout.write(`${items.length} prompts; mean NLL of answer digits 1..5 (chance ln 10 = 2.30)\n`);
  process.stdout.write('nLocal  fromLayer  insertAt   k |   d1    d2    d3    d4    d5\n');
  for (const nLocal of numbers('n-local', '128,256'))
    for (const fromLayer of numbers('from', '0,1,2,3'))
      for (const insertAt of numbers('insert-at', '16,64,128,200'))
        for (const k of numbers('k', '1,5,20')) {
          const sums = new Float64Array(5);
          for (const { prompt, answer } of items) {
            const ids = [...prompt.tokens, ...answer];
            const session = model.createSession({ attention: { nLocal, topK: { k, fromLayer, insertAt, maxArchive: ids.length } } });
            const r = await session.score(ids);
            session.dispose();
            const digits = r.nll.subarray(r.nll.length - 5);
            for (let d = 0; d < 5; d++) sums[d] += digits[d] / items.length;
          }
          const cells = Array.from(sums, (x) => x.toFixed(2).padStart(5)).join(' ');
          process.stdout.write(`${String(nLocal).padStart(6)} ${String(fromLayer).padStart(10)} ${String(insertAt).padStart(9)} ${String(k).padStart(3)} | ${cells}\n`);
        }
}

async function reference(model: Model): Promise<void> {
  const bytes = new Uint8Array(readFileSync(modelPath));
  const ref = new ReferenceModel(parseGguf(bytes), bytes);
  const nLocal = Number(arg('n-local', '256'));
  const topK = { k: Number(arg('k', '1')), fromLayer: Number(arg('from', '0')), insertAt: Number(arg('insert-at', '64')) };
  const settings: { name: string; attention: LambdaAttentionOptions }[] = [
    { name: 'lambda', attention: { nGlobal: 10, nLocal, limitDistance: nLocal } },
    { name: 'lambda-topk', attention: { nGlobal: 10, nLocal, limitDistance: nLocal, topK: { ...topK, maxArchive: 0 } } },
  ];
  for (const { spec, prompt } of prompts(model, Number(arg('keys', '1')))) {
    process.stdout.write(`length ${spec.length} (${prompt.tokens.length} tokens), depth ${spec.depth}, key ${spec.key}\n`);
    for (const s of settings) {
      const answers: string[] = [];
      for (const kvType of ['f16', 'f32'] as const) {
        const attention = s.attention.topK ? { ...s.attention, topK: { ...s.attention.topK, maxArchive: prompt.tokens.length + 8 } } : s.attention;
        const session = model.createSession({ kvType, attention });
        await session.append(prompt.tokens);
        let text = '';
        for await (const piece of session.generate({ maxTokens: 8, temperature: 0, seed: 0 })) text += piece.text;
        session.dispose();
        answers.push(text.trim());
      }
      const ids = ref.greedy(Array.from(prompt.tokens), 8, {
        attention: { nGlobal: 10, nLocal, limitDistance: nLocal, ...(s.attention.topK ? { topK } : {}) },
      });
      const refText = model.tokenizer.decode(ids).trim();
      const same = answers.every((a) => a === refText) ? 'same' : 'DIFFERENT';
      process.stdout.write(`  ${s.name.padEnd(12)} engine f16 ${JSON.stringify(answers[0])}, f32 ${JSON.stringify(answers[1])}; reference ${JSON.stringify(refText)} (${same})\n`);
    }
  }
}

async function main(): Promise<void> {
  const what = process.argv[2];
  if (what !== 'scan' && what !== 'reference') throw new Error('usage: bench/passkey-topk.ts scan|reference [options] (see the file comment)');
  const model = await loadModel(modelPath, { threads: Number(arg('threads', '1')) });
  try {
    await (what === 'scan' ? scan(model) : reference(model));
  } finally {
    await model.dispose();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exitCode = 1;
});

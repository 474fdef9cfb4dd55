/**
 * Decode throughput of NativeModel.evalMany (one forward pass for all sequences) against one
 * eval() per sequence, at 1, 4 and 16 concurrent sequences. Each sequence is a Λ session-like
 * context (nGlobal 10, nLocal = the model's training length) primed with a short prompt; then
 * every step decodes one token per sequence (logits 'last', as generation does).
 *
 *   npx sucrase-node bench/serve-evalmany.ts [--model file.gguf] [--steps 200] [--threads 1,2] [--no-write]
 *
 * Default model: stories260K from the fixtures (LMI_FIXTURES, default ../shared/fixtures).
 */
import * as path from 'path';

import { evalBatch, KvCache } from '../lib/cache';
import { describeModelFile } from '../lib/model';
import { loadAddon } from '../lib/native/addon';
import type { NativeContext } from '../lib/native/types';
import { arg, defaultModel, flag, machine, writeResultsSection } from './serve-common';

const modelFile = arg('model', defaultModel);
const steps = Number(arg('steps', '200'));
const threadList = arg('threads', '1,2').split(',').map(Number);


function argmax(row: Float32Array): number {
  let best = 0;
  for (let v = 1; v < row.length; v++) if (row[v] > row[best]) best = v;
  return best;
}

async function main(): Promise<void> {
  const addon = await loadAddon();
  const rows: string[] = [];
  for (const threads of threadList) {
    const { spec, tokenizer } = await describeModelFile(modelFile, threads);
    const native = await addon.loadModel(spec);
    const evalMany = native.evalMany?.bind(native);
    if (!evalMany) throw new Error('the native addon has no evalMany: rebuild it (npm run build:native)');
    const prompt = tokenizer.encode('Once upon a time', { addSpecial: true });
    for (const S of [1, 4, 16]) {
      const result: Record<string, number> = {};
      for (const how of ['eval (one per sequence)', 'evalMany']) {
        const seqs: { cache: KvCache; ctx: NativeContext; next: number }[] = [];
        for (let s = 0; s < S; s++) {
          const cache = new KvCache({ mode: 'lambda', nGlobal: 10, nLocal: spec.hparams.contextLength, limitDistance: spec.hparams.contextLength, maxBatch: 16 });
          const ctx = native.createContext({ nSlot: cache.size.nSlot, nArchive: 0, topKFromLayer: spec.hparams.nLayer, kvType: 'f16', maxBatch: 16, threads });
          const plan = cache.plan(prompt.length);
          const out = await ctx.eval(evalBatch(plan, Int32Array.from(prompt), 'last'));
          cache.commit(plan);
          seqs.push({ cache, ctx, next: argmax(out) });
        }
        const step = async () => {
          const plans = seqs.map((q) => q.cache.plan(1));
          let outs: Float32Array[];
          if (how === 'evalMany') {
            outs = await evalMany(seqs.map((q, s) => ({ context: q.ctx, batch: evalBatch(plans[s], Int32Array.of(q.next), 'last') })));
          } else {
            outs = [];
            for (let s = 0; s < S; s++) outs.push(await seqs[s].ctx.eval(evalBatch(plans[s], Int32Array.of(seqs[s].next), 'last')));
          }
          seqs.forEach((q, s) => {
            q.cache.commit(plans[s]);
            q.next = argmax(outs[s]);
          });
        };
        for (let k = 0; k < 5; k++) await step(); // warm the graph caches
        const t0 = process.hrtime.bigint();
        for (let k = 0; k < steps; k++) await step();
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        result[how] = (steps * S) / seconds;
        for (const q of seqs) q.ctx.dispose();
      }
      const single = result['eval (one per sequence)'];
      const many = result.evalMany;
      rows.push(`| ${threads} | ${S} | ${single.toFixed(0)} | ${many.toFixed(0)} | ${(many / single).toFixed(2)}× |`);
    }
    native.dispose();
  }
  const table = ['| threads | concurrent sequences | eval, one per sequence: tokens/s | evalMany: tokens/s | gain |', '| ---: | ---: | ---: | ---: | ---: |', ...rows].join('\n');
  console.log(table);
  if (!flag('no-write'))
    writeResultsSection(
      'Serve: evalMany (continuous batching) decode throughput',
      `\`npx sucrase-node bench/serve-evalmany.ts --steps ${steps} --threads ${threadList.join(',')}\`\n\n` +
        `${path.basename(modelFile)}, f16 K/V, Λ (nGlobal 10, nLocal = training length); each sequence primed with ` +
        `"Once upon a time", then ${steps} greedy decode steps of one token per sequence, timed after 5 warm-up steps. ` +
        `"eval": one NativeContext.eval per sequence per step; "evalMany": one NativeModel.evalMany per step for all sequences. ` +
        `${machine()}.\n\n${table}\n\n` +
        'Logits: evalMany equals separate evals exactly (max |Δ| = 0 over 256k logits in test/serve/eval-many.test.ts; the test allows 2e-4). ' +
        'A model this small is bound by per-call overhead (graph dispatch, thread wake-ups), which one pass per step shares across all sequences.',
    );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

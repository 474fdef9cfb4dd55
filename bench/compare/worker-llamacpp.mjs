// llama.cpp's side of bench/compare-llamacpp.mjs (node-llama-cpp 3.21.1, CPU build): one child
// process runs one plan and prints JSON.
//   node bench/compare/worker-llamacpp.mjs '<json job>'
// job: { model, threads, contextSize, batchSize, plan, seed }
// Decoding uses node-llama-cpp's own loop (sequence.evaluate: evaluate, then sample greedily in C++),
// as a user of it would; EOG tokens are yielded instead of ending the loop.
import { getLlama } from 'node-llama-cpp';

import { memory, now, runPlan } from './stream.mjs';

const job = JSON.parse(process.argv[2]);
const t0 = now();
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false });
const model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0 });
const loadSeconds = now() - t0;
const context = await model.createContext({
  contextSize: job.contextSize,
  batchSize: job.batchSize,
  threads: { ideal: job.threads, min: job.threads },
  flashAttention: job.flashAttention ?? "auto",
  ...(job.kvType === 'q8_0' ? { experimentalKvCacheKeyType: 'Q8_0', experimentalKvCacheValueType: 'Q8_0' } : {}),
});
if (context.contextSize < job.contextSize) throw new Error(`llama.cpp made a context of ${context.contextSize} cells, not ${job.contextSize}`);
const sequence = context.getSequence({ contextShift: { size: 0 } });

// Like lm-infinite's session, the last token of a prompt (and the last generated token) is held back
// and evaluated by the next operation, so a decode step is always: evaluate one token, sample one.
let pending = null;
const engine = {
  async prefill(ids) {
    const list = pending === null ? ids.slice(0, -1) : [pending, ...ids.slice(0, -1)];
    if (list.length > 0) await sequence.evaluateWithoutGeneratingNewTokens(list);
    pending = ids[ids.length - 1];
  },
  async decode(n) {
    const steps = [];
    let last = now();
    for await (const token of sequence.evaluate([pending], { temperature: 0, yieldEogToken: true })) {
      const t = now();
      steps.push(t - last);
      last = t;
      pending = token;
      if (steps.length >= n) break;
    }
    return { steps };
  },
  async reset() {
    await sequence.clearHistory();
    pending = null;
  },
};

const phases = await runPlan(engine, job.plan, job.nVocab, job.seed);
await context.dispose();
await model.dispose();
await llama.dispose();
process.stdout.write(`${JSON.stringify({ engine: 'llama.cpp', loadSeconds, phases, final: memory() })}\n`);

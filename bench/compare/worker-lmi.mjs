// lm-infinite's side of bench/compare-llamacpp.mjs: one child process runs one plan and prints JSON.
//   node bench/compare/worker-lmi.mjs '<json job>'
// job: { model, threads, attention: 'vanilla' | { nGlobal, nLocal, limitDistance }, maxContext?, chunkSize, plan, seed }
import { loadModel } from '../../dist/index.mjs';
import { memory, now, runPlan } from './stream.mjs';

const job = JSON.parse(process.argv[2]);
const t0 = now();
const model = await loadModel(job.model, { threads: job.threads });
const loadSeconds = now() - t0;
const nVocab = model.tokenizer.vocabSize;
if (nVocab !== job.nVocab) throw new Error(`${job.model} has ${nVocab} tokens, the job says ${job.nVocab}`);

const banned = {};
for (let id = 0; id < nVocab; id++) if (model.tokenizer.isEog(id)) banned[id] = -Infinity;

const sessionOptions = () => ({
  attention: job.attention,
  chunkSize: job.chunkSize,
  threads: job.threads,
  ...(job.attention === 'vanilla' ? { maxContext: job.maxContext } : {}),
});
let session = model.createSession(sessionOptions());

const engine = {
  async prefill(ids) {
    await session.append(ids);
  },
  async decode(n) {
    const steps = [];
    const before = session.stats.computeSeconds;
    let last = now();
    for await (const _ of session.generate({ maxTokens: n, temperature: 0, logitBias: banned })) {
      const t = now();
      steps.push(t - last);
      last = t;
    }
    return { steps, computeSeconds: session.stats.computeSeconds - before };
  },
  async reset() {
    session.dispose();
    session = model.createSession(sessionOptions());
  },
};

const phases = await runPlan(engine, job.plan, nVocab, job.seed);
const kvBytes = session.kvBytes;
session.dispose();
process.stdout.write(`${JSON.stringify({ engine: 'lm-infinite', loadSeconds, kvBytes, phases, final: memory() })}\n`);

// lm-infinite's side of bench/compare-llamacpp.mjs: one child process runs one plan and prints JSON.
//   node bench/compare/worker-lmi.mjs '<json job>'
// job: { model, threads, attention: 'vanilla' | { nGlobal, nLocal, limitDistance }, maxContext?, chunkSize, plan, seed }
// or, for the flat-cost measurement, { ..., flat: { near, far, tokens, rounds } } instead of plan:
// two sessions of the model, one prefilled to `near` tokens and one to `far`, decode `tokens`
// greedy tokens each in turn (the order alternating) for `rounds` rounds.
import { loadModel } from '../../dist/index.mjs';
import { TokenStream, memory, now, runPlan } from './stream.mjs';

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
  ...(job.kvType ? { kvType: job.kvType } : {}),
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

if (job.flat) {
  session.dispose();
  const { near, far, tokens, rounds } = job.flat;
  // Each session decodes tokens once unmeasured, then in every round: it starts early enough that
  // the measured rounds' middle token sits at the named position (the near session's window then
  // spans near ± tokens * rounds / 2 keys, centred on near).
  const lead = tokens * (1 + rounds / 2);
  if (near - lead < 1) throw new Error(`flat: near (${near}) must exceed ${lead} tokens`);
  const sessions = {};
  for (const [name, length] of [['near', near - lead], ['far', far - lead]]) {
    const s = model.createSession(sessionOptions());
    const stream = new TokenStream(nVocab, job.seed);
    for (let left = length; left > 0; left -= 16384) await s.append(stream.next(Math.min(16384, left)));
    sessions[name] = s;
  }
  const decodeRate = async (s) => {
    const t0 = now();
    let n = 0;
    for await (const _ of s.generate({ maxTokens: tokens, temperature: 0, logitBias: banned })) n++;
    return n / (now() - t0);
  };
  // The JavaScript side compiled and warm first (its optimizing compiler shares the cores with
  // the engine's threads), in a session of its own, then both measured sessions once.
  const warm = model.createSession(sessionOptions());
  await warm.append(new TokenStream(nVocab, job.seed + 1).next(128));
  for (let r = 0; r < 8; r++) await decodeRate(warm);
  warm.dispose();
  await decodeRate(sessions.near);
  await decodeRate(sessions.far);
  const measured = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['near', 'far'] : ['far', 'near'];
    const rate = {};
    for (const name of order) rate[name] = await decodeRate(sessions[name]);
    measured.push(rate);
  }
  const kvBytes = sessions.far.kvBytes;
  for (const s of Object.values(sessions)) s.dispose();
  process.stdout.write(`${JSON.stringify({ engine: 'lm-infinite', loadSeconds, kvBytes, flat: { ...job.flat, rounds: measured }, final: memory() })}\n`);
  process.exit(0);
}

const phases = await runPlan(engine, job.plan, nVocab, job.seed);
const kvBytes = session.kvBytes;
session.dispose();
process.stdout.write(`${JSON.stringify({ engine: 'lm-infinite', loadSeconds, kvBytes, phases, final: memory() })}\n`);

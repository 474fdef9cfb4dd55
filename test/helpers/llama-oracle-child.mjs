// Child-process side of test/helpers/llama-oracle.ts: runs llama.cpp (through node-llama-cpp, CPU)
// on a JSON request read from stdin and writes one JSON reply to stdout.
//
// Request:  { models: [{ modelPath, contextSize, kvType, threads, jobs: [job, ...] }, ...] }
//   job:    { kind: 'logprobs', tokens }        -> { logprobs: base64 of Float32 [tokens.length][nVocab] }
//           { kind: 'greedy', tokens, n }       -> { ids: number[] }
//           { kind: 'tokenize', text, special } -> { ids: number[] }
// Reply:    MARKER line, then { models: [{ nVocab, results: [...] } | { error }] } for the models up to
//           and including the first one llama.cpp refuses (the caller restarts after it).
// Log-probabilities are log(p) of node-llama-cpp's probabilities: a float32 softmax of the raw logits
// (temperature 0, no penalties), so every vocabulary entry is present.

import { getLlama } from 'node-llama-cpp';

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function logprobRow(probs, nVocab) {
  const row = new Float32Array(nVocab).fill(-Infinity);
  for (const [id, p] of probs) row[id] = Math.log(p);
  return row;
}

async function runModel(llama, spec) {
  const model = await llama.loadModel({ modelPath: spec.modelPath, gpuLayers: 0 });
  let vocabSize = 0;
  // One spare cell: with a context exactly as long as the sequence, node-llama-cpp was seen to make
  // room (shift the context) before the last token, which then got different logits.
  const maxTokens = 1 + Math.max(1, ...spec.jobs.map((j) => (j.tokens ? j.tokens.length + (j.n ?? 0) : 1)));
  const context = await model.createContext({
    contextSize: Math.max(spec.contextSize ?? 0, maxTokens),
    batchSize: Math.max(spec.contextSize ?? 0, maxTokens),
    flashAttention: false,
    threads: spec.threads ?? 2,
    experimentalKvCacheKeyType: spec.kvType ?? 'F32',
    experimentalKvCacheValueType: spec.kvType ?? 'F32',
  });
  const sequence = context.getSequence();
  const results = [];
  try {
    for (const job of spec.jobs) {
      if (job.kind === 'tokenize') {
        results.push({ ids: Array.from(model.tokenize(job.text, job.special ?? false)) });
        continue;
      }
      await sequence.clearHistory();
      if (job.kind === 'logprobs') {
        const out = await sequence.controlledEvaluate(
          job.tokens.map((t) => [t, { generateNext: { probabilities: true } }]),
        );
        vocabSize = out[0].next.probabilities.size;
        const all = new Float32Array(job.tokens.length * vocabSize);
        out.forEach((o, i) => all.set(logprobRow(o.next.probabilities, vocabSize), i * vocabSize));
        results.push({ logprobs: Buffer.from(all.buffer).toString('base64') });
      } else if (job.kind === 'greedy') {
        const ids = [];
        let input = job.tokens.map((t, i) => (i === job.tokens.length - 1 ? [t, { generateNext: { token: true } }] : t));
        for (let step = 0; step < job.n; step++) {
          const out = await sequence.controlledEvaluate(input);
          const next = out[out.length - 1].next.token;
          ids.push(next);
          input = [[next, { generateNext: { token: true } }]];
        }
        results.push({ ids });
      } else {
        throw new Error(`unknown job kind ${job.kind}`);
      }
    }
  } finally {
    await context.dispose();
    await model.dispose();
  }
  return { nVocab: vocabSize, results };
}

// llama.cpp's error lines since the current model started loading: its refusal reasons.
let logLines = [];
const MARKER = '\n@@lm-infinite-oracle-reply@@\n';
const request = await readStdin();
const llama = await getLlama({
  gpu: false,
  build: 'never',
  logLevel: 'error',
  progressLogs: false,
  logger: (level, message) => {
    if (level === 'error' || level === 'fatal') logLines.push(String(message).trim());
  },
});
const reply = { models: [] };
for (const spec of request.models) {
  logLines = [];
  try {
    reply.models.push(await runModel(llama, spec));
  } catch (e) {
    const reasons = [...new Set(logLines)].join('; ');
    reply.models.push({ error: `${String(e && e.message ? e.message : e)}${reasons ? `: ${reasons}` : ''}` });
    // After a refused model the next loadModel in this process was seen to never settle: stop here;
    // the caller starts a new process for the models after this one.
    break;
  }
}
await llama.dispose();
process.stdout.write(MARKER + JSON.stringify(reply));

// The llama.cpp oracle for the engine tests, run as a child process (node-llama-cpp is ESM-only).
// Usage: node llama-cpp-oracle.mjs < request.json  — prints one JSON object on stdout.
// Request: { modelPath, contextSize, text, nTokens, greedyPrompt, greedyTokens }
// Reply:   { tokens: [BOS, ...first tokens of text] (nTokens), greedyPrompt, greedy: number[],
//            logProbs: { [config]: number[nTokens][nVocab] } (next-token log-probabilities after each
//            position) for two llama.cpp configurations:
//              default: node-llama-cpp's defaults (flash attention 'auto', f16 K/V cache);
//              exact:   no flash attention and an f32 K/V cache, so attention runs in f32 throughout.
import { readFileSync } from 'node:fs';

const req = JSON.parse(readFileSync(0, 'utf8'));
const { getLlama } = await import('node-llama-cpp');
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
const model = await llama.loadModel({ modelPath: req.modelPath });

const reply = {};

// Teacher-forced next-token distributions over BOS + the text's first tokens.
const tokens = [model.tokens.bos, ...model.tokenize(req.text)].slice(0, req.nTokens);
if (tokens.length < req.nTokens) throw new Error(`text gives only ${tokens.length} tokens`);
reply.tokens = tokens;
reply.logProbs = {};
const configs = {
  default: {},
  exact: { flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' },
  f16NoFlash: { flashAttention: false },
};
for (const [name, options] of Object.entries(configs)) {
  // One thread: node-llama-cpp's default thread count spins badly on a busy machine.
  const ctx = await model.createContext({ contextSize: req.contextSize, threads: 1, ...options });
  const seq = ctx.getSequence();
  const res = await seq.controlledEvaluate(tokens.map((t) => [t, { generateNext: { probabilities: true } }]));
  reply.logProbs[name] = res.map((r, i) => {
    const probs = r?.next?.probabilities;
    if (!probs) throw new Error(`no probabilities at position ${i}`);
    const row = new Array(probs.size);
    for (const [id, p] of probs) row[id] = Math.log(p);
    return row;
  });
  await ctx.dispose();
}

// Greedy continuation.
{
  const ctx = await model.createContext({ contextSize: req.contextSize, threads: 1 });
  const seq = ctx.getSequence();
  const prompt = [model.tokens.bos, ...model.tokenize(req.greedyPrompt)];
  const out = [];
  for await (const t of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
    out.push(t);
    if (out.length >= req.greedyTokens) break;
  }
  reply.greedyPrompt = prompt;
  reply.greedy = out;
  await ctx.dispose();
}

await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(reply));

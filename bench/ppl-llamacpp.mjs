#!/usr/bin/env node
// llama.cpp's side of the perplexity reproduction (bench/ppl-repro.mjs): per-token NLL of one token
// stream under llama.cpp (node-llama-cpp 3.21.1, a dev-dependency; CPU), in one of three modes:
//
//   shift    one sequence in a context of --context cells (512): when it is full, node-llama-cpp
//            erases the oldest tokens after BOS (its default contextShift: strategy "eraseBeginning",
//            size min(100, context / 2)) and shifts the rest down (llama.cpp's K shift). So every
//            token sees BOS + the last 410–510 tokens, at positions below the context size.
//   windows  independent fresh windows: BOS + the next (context - 1) tokens of the stream, each
//            window in an emptied sequence; every token is scored once, from its window only.
//   vanilla  one sequence, no shift: a context large enough for the whole (capped) stream.
//
// Usage:
//   node bench/ppl-llamacpp.mjs --model M.gguf --ids ids.i32 --mode shift|windows|vanilla
//        [--context 512] [--threads 1] [--max-tokens N] [--text T.txt] [--out nll.f32]
//
// --ids: the token stream (BOS first) as raw little-endian int32, so both engines see the same ids.
// --text: also tokenize this text with llama.cpp and report whether BOS + its tokens equal --ids.
// --out: writes the NLL (nats) of tokens 1 … n-1 as raw little-endian float32 (entry k is the token at
//        position k + 1, predicted from the tokens before it).
// Prints one JSON object: { mode, context, tokens, scored, meanNll, seconds, tokenizationMatches }.
import { readFileSync, writeFileSync } from 'node:fs';

import { getLlama } from 'node-llama-cpp';

function parseArgs(argv) {
  const o = { context: 512, threads: 1 };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    const v = () => {
      if (k + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++k];
    };
    if (a === '--model') o.model = v();
    else if (a === '--ids') o.ids = v();
    else if (a === '--text') o.text = v();
    else if (a === '--mode') o.mode = v();
    else if (a === '--context') o.context = Number(v());
    else if (a === '--threads') o.threads = Number(v());
    else if (a === '--max-tokens') o.maxTokens = Number(v());
    else if (a === '--out') o.out = v();
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.model || !o.ids || !['shift', 'windows', 'vanilla'].includes(o.mode))
    throw new Error('usage: --model M.gguf --ids ids.i32 --mode shift|windows|vanilla [--context 512] [--threads 1] [--max-tokens N] [--text T] [--out nll.f32]');
  for (const key of ['context', 'threads', 'maxTokens'])
    if (o[key] !== undefined && !(Number.isInteger(o[key]) && o[key] > 0)) throw new Error(`--${key} must be a positive integer`);
  return o;
}

/** -log p(target) from node-llama-cpp's probability map (a float32 softmax of the raw logits at temperature 0). */
function nllOf(result, target) {
  const p = result?.next?.probabilities?.get(target);
  if (p === undefined) throw new Error('llama.cpp returned no probability for a target token');
  return -Math.log(p);
}

/** Teacher-forces `tokens` through `sequence`; nll[first + k] gets the NLL of the token after tokens[k]. */
async function evaluateInto(sequence, tokens, next, nll, first) {
  const res = await sequence.controlledEvaluate(tokens.map((t) => [t, { generateNext: { probabilities: true } }]));
  for (let k = 0; k < tokens.length; k++) {
    const target = next(k);
    if (target !== undefined) nll[first + k] = nllOf(res[k], target);
  }
}

const o = parseArgs(process.argv.slice(2));
const buf = readFileSync(o.ids);
let ids = new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength >> 2);
if (o.maxTokens !== undefined) ids = ids.subarray(0, o.maxTokens);
const n = ids.length;

const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false });
const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
let tokenizationMatches = null;
if (o.text !== undefined) {
  const theirs = model.tokenize(readFileSync(o.text, 'utf8'), false);
  tokenizationMatches = theirs.length + 1 >= n && ids[0] === model.tokens.bos && theirs.slice(0, n - 1).every((t, k) => t === ids[k + 1]);
}

const nll = new Float32Array(n - 1);
const t0 = performance.now();
// Cells beyond the longest sequence: with a context exactly as long as the sequence node-llama-cpp
// shifts before the last token (it keeps one cell free).
const contextSize = o.mode === 'vanilla' ? Math.ceil((n + 1) / 256) * 256 : o.context;
const context = await model.createContext({ contextSize, batchSize: Math.min(contextSize, 2048), threads: o.threads, flashAttention: false });
if (context.contextSize !== contextSize) throw new Error(`llama.cpp made a context of ${context.contextSize} cells, not ${contextSize}`);
const sequence = context.getSequence();
const progressEvery = 16384;
let reported = 0;
const report = (done) => {
  if (done - reported >= progressEvery || done === n) {
    reported = done;
    process.stderr.write(`${o.mode}: ${done}/${n} tokens, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  }
};
if (o.mode === 'windows') {
  const width = o.context - 1; // stream tokens per window; BOS makes it o.context
  for (let s = 1; s < n; s += width) {
    const e = Math.min(n, s + width);
    await sequence.clearHistory();
    const tokens = [ids[0], ...ids.subarray(s, e)];
    // window token k predicts stream token s + k (k = 0 is BOS)
    await evaluateInto(sequence, tokens, (k) => (s + k < e ? ids[s + k] : undefined), nll, s - 1);
    report(e);
  }
} else {
  // one stream; the shift (if any) happens inside controlledEvaluate
  const chunk = 4096;
  for (let s = 0; s < n; s += chunk) {
    const e = Math.min(n, s + chunk);
    await evaluateInto(sequence, Array.from(ids.subarray(s, e)), (k) => (s + k + 1 < n ? ids[s + k + 1] : undefined), nll, s);
    report(e);
  }
}
const seconds = (performance.now() - t0) / 1000;
await context.dispose();
await model.dispose();
await llama.dispose();

if (o.out) writeFileSync(o.out, Buffer.from(nll.buffer));
let sum = 0;
for (const x of nll) sum += x;
process.stdout.write(`${JSON.stringify({ mode: o.mode, context: contextSize, tokens: n, scored: n - 1, meanNll: sum / (n - 1), seconds, tokenizationMatches })}\n`);

/**
 * Test doubles (never shipped): a tiny SentencePiece tokenizer, and a fake native model whose
 * contexts keep (token, position) per slot, apply the batch's slot table exactly as native must,
 * check it, and return logits that depend on exactly the keys the Λ rule lets each query see,
 * at the distances it assigns.
 */
import { classify, globalDistance } from '../../lib/attention/rule';
import { Model, type ModelInfo } from '../../lib/model/model';
import type { NativeContext, NativeContextOptions, NativeEvalBatch, NativeHyperparameters, NativeModel } from '../../lib/native/types';
import { Tokenizer, TokenType } from '../../lib/tokenizer';

export const WORDS = ['▁Once', '▁upon', '▁a', '▁time', '▁the', '▁cat', '▁sat', '.', '▁STOP', '▁end', '▁', 'a', 'e', 'i', 'o', 'u', 'n', 't', 's'];

/** ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 bytes <0x00>..<0xFF>, then WORDS. */
export function tinyTokenizer(): Tokenizer {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TokenType.BYTE);
  }
  for (const w of WORDS) {
    tokens.push(w);
    types.push(TokenType.NORMAL);
  }
  const scores = Float32Array.from(tokens, (t, i) => (i < 259 ? 0 : -i + (t.length > 2 ? 1000 : 0)));
  return new Tokenizer({ model: 'llama', tokens, scores, tokenTypes: Int32Array.from(types), bosId: 1, eosId: 2, unkId: 0, addBos: true, addEos: false, addSpacePrefix: true });
}

export const byteId = (b: number) => 3 + b;

export interface FakeBehaviour {
  /** Milliseconds each eval takes (0: resolves on the next macrotask). */
  delayMs?: number;
  /** Token forced (logit +100) as the prediction after the token at this position. */
  script?: (position: number) => number | undefined;
  /** Makes the n-th eval (0-based, across all contexts) reject. */
  failEval?: number;
}

export class FakeContext implements NativeContext {
  readonly tokens: Int32Array;
  readonly pos: BigInt64Array;
  readonly batches: NativeEvalBatch[] = [];
  disposed = false;
  busy = false;
  violations: string[] = [];

  constructor(readonly model: FakeNativeModel, readonly options: NativeContextOptions) {
    const n = options.nSlot + options.nArchive;
    this.tokens = new Int32Array(n).fill(-1);
    this.pos = new BigInt64Array(n).fill(-1n);
  }

  kvBytes(): number {
    if (this.disposed) throw new Error('kvBytes on a disposed context');
    const { nLayer, nHeadKV, headDim } = this.model.hparams;
    return (this.options.nSlot + this.options.nArchive) * nLayer * nHeadKV * headDim * 2 * (this.options.kvType === 'f16' ? 2 : 4);
  }

  stats(): { evals: number; calls: number; computeSeconds: number } {
    return { evals: this.batches.length, calls: this.batches.length, computeSeconds: 0 };
  }

  dispose(): void {
    if (this.busy) this.violations.push('disposed while an eval was running');
    this.disposed = true;
    this.model.contextsDisposed++;
  }

  async eval(batch: NativeEvalBatch): Promise<Float32Array> {
    if (this.disposed) throw new Error('eval on a disposed context');
    if (this.busy) {
      this.violations.push('two evals at once on one context');
      throw new Error('two evals at once on one context');
    }
    this.busy = true;
    this.model.active++;
    this.model.maxActive = Math.max(this.model.maxActive, this.model.active);
    const evalIndex = this.model.evals++;
    try {
      await new Promise((r) => setTimeout(r, this.model.behaviour.delayMs ?? 0));
      if (evalIndex === this.model.behaviour.failEval) throw Object.assign(new Error('fake native failure'), { code: 'NATIVE' });
      this.batches.push(batch);
      return this.run(batch);
    } finally {
      this.busy = false;
      this.model.active--;
    }
  }

  private run(batch: NativeEvalBatch): Float32Array {
    const n = batch.tokens.length;
    const nAll = this.options.nSlot + this.options.nArchive;
    const fail = (m: string): never => {
      this.violations.push(m);
      throw new Error(m);
    };
    if (n < 1 || n > this.options.maxBatch) fail(`batch of ${n} tokens, maxBatch ${this.options.maxBatch}`);
    if (batch.positions.length !== n || batch.slots.length !== n) fail('positions/slots length');
    if (batch.slotPositions.length !== nAll) fail(`slotPositions has ${batch.slotPositions.length} entries, expected ${nAll}`);
    // The batch attends the slots as they are before it (which it must describe exactly) and its own tokens.
    for (let s = 0; s < nAll; s++) if (this.pos[s] !== batch.slotPositions[s]) fail(`slot ${s} holds position ${this.pos[s]}, batch says ${batch.slotPositions[s]}`);
    for (let k = 0; k < n; k++) {
      if (k > 0 && batch.positions[k] <= batch.positions[k - 1]) fail('positions do not increase');
      for (let s = 0; s < nAll; s++) if (this.pos[s] >= batch.positions[k]) fail(`slot ${s} holds position ${this.pos[s]}, not older than the batch`);
    }
    const V = this.model.hparams.nVocab;
    const rows = batch.logits === 'all' ? n : batch.logits === 'last' ? 1 : 0;
    if (batch.out !== undefined && batch.out.length !== rows * V) fail(`out has ${batch.out.length} elements, expected ${rows * V}`);
    const out = batch.out ?? new Float32Array(rows * V);
    const keyTokens = Int32Array.from([...this.tokens, ...batch.tokens]);
    const keyPositions = BigInt64Array.from([...this.pos, ...batch.positions]);
    for (let r = 0; r < rows; r++) {
      const k = batch.logits === 'all' ? r : n - 1;
      out.set(this.model.logitsFor(Number(batch.positions[k]), batch.tokens[k], keyTokens, keyPositions, batch), r * V);
    }

    for (let c = 0; c < batch.archiveCopies.length; c += 2) {
      const [src, dst] = [batch.archiveCopies[c], batch.archiveCopies[c + 1]];
      if (src < 0 || src >= this.options.nSlot || dst < this.options.nSlot || dst >= nAll) fail(`bad archive copy ${src} → ${dst}`);
      this.tokens[dst] = this.tokens[src];
      this.pos[dst] = this.pos[src];
    }
    for (let k = 0; k < n; k++) {
      const s = batch.slots[k];
      if (s < 0 || s >= this.options.nSlot) fail(`slot ${s} out of range`);
      if (batch.slots.indexOf(s) !== k) fail(`slot ${s} written twice in one batch`);
      this.tokens[s] = batch.tokens[k];
      this.pos[s] = batch.positions[k];
    }
    return out;
  }
}

export class FakeNativeModel implements NativeModel {
  readonly contexts: FakeContext[] = [];
  evals = 0;
  active = 0;
  maxActive = 0;
  contextsDisposed = 0;
  disposed = false;
  disposedWithLiveContexts = false;

  constructor(readonly hparams: NativeHyperparameters, readonly behaviour: FakeBehaviour = {}) {}

  createContext(options: NativeContextOptions): NativeContext {
    if (this.disposed) throw new Error('createContext on a disposed model');
    const ctx = new FakeContext(this, options);
    this.contexts.push(ctx);
    return ctx;
  }

  weightBytes(): number {
    return 1234;
  }

  dispose(): void {
    if (this.contexts.some((c) => !c.disposed)) this.disposedWithLiveContexts = true;
    this.disposed = true;
  }

  /** Logits for a query: a smooth function of every visible key's token and attended distance. */
  logitsFor(i: number, queryToken: number, tokens: Int32Array, pos: BigInt64Array, batch: NativeEvalBatch): Float32Array {
    const V = this.hparams.nVocab;
    const keys: [number, number, number][] = []; // position, token, distance
    for (let s = 0; s < pos.length; s++) {
      const j = Number(pos[s]);
      if (j < 0) continue;
      const branch = classify(i, j, batch.mask);
      if (branch === 'local') keys.push([j, tokens[s], i - j]);
      else if (branch === 'global') keys.push([j, tokens[s], globalDistance(i, batch.mask)]);
      else if (branch === 'middle' && batch.topK.k > 0) keys.push([j, tokens[s], batch.topK.insertAt]);
    }
    keys.sort((x, y) => x[0] - y[0]);
    const out = new Float32Array(V);
    for (let v = 0; v < V; v++) {
      let acc = Math.cos(0.3 * queryToken * (v + 1));
      for (const [, t, d] of keys) acc += Math.sin(0.7 * t + 1.3 * v + 0.05 * d * (1 + (v % 3))) / keys.length;
      out[v] = acc;
    }
    const forced = this.behaviour.script?.(i);
    if (forced !== undefined) out[forced] += 100;
    return out;
  }
}

export function fakeHparams(tokenizer: Tokenizer, over: Partial<NativeHyperparameters> = {}): NativeHyperparameters {
  return {
    nVocab: tokenizer.vocabSize,
    nEmbd: 16,
    nLayer: 5,
    nHead: 4,
    nHeadKV: 2,
    headDim: 4,
    nFF: 32,
    normEps: 1e-5,
    contextLength: 64,
    ropeTheta: 10000,
    ropeFreqScale: 1,
    rotaryDim: 4,
    ropePairing: 'normal',
    parallelResidual: false,
    alibiBiasMax: 0,
    clampKQV: 0,
    ...over,
  };
}

/** A Model over the fake native model. */
export function fakeModel(behaviour: FakeBehaviour = {}, over: Partial<NativeHyperparameters> = {}): { model: Model; native: FakeNativeModel; tokenizer: Tokenizer } {
  const tokenizer = tinyTokenizer();
  const hparams = fakeHparams(tokenizer, over);
  const native = new FakeNativeModel(hparams, behaviour);
  const info: ModelInfo = {
    arch: 'llama',
    name: 'fake',
    path: 'fake.gguf',
    hparams,
    contextLength: hparams.contextLength,
    nVocab: hparams.nVocab,
    weightBytes: native.weightBytes(),
    tensorCount: 0,
    threads: 1,
    device: 'cpu',
    weightLayouts: [],
  };
  return { model: new Model(native, info, tokenizer), native, tokenizer };
}

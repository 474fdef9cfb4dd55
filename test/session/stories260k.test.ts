/**
 * Sessions on the real engine (native addon) with the stories260K fixture (PROVENANCE.md §1).
 * Needs the addon built with the model engine and the fixtures (LMI_FIXTURES, default ../shared/fixtures).
 */
import * as fs from 'fs';
import * as path from 'path';

import { AbortError, DisposedError } from '../../lib/errors';
import { loadModel, type Model } from '../../lib/model';
import { loadAddon } from '../../lib/native/addon';
import type { Session } from '../../lib/session';
import { fixturesDir, stories260K } from '../model/fixtures';

/** PROVENANCE.md §1: greedy continuation of BOS + "Once upon a time" under llama.cpp. */
const PROMPT_IDS = [1, 403, 407, 261, 378];
const GREEDY_IDS = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394];
const GREEDY_TEXT = ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw';

let model: Model;
let storyIds: number[];

beforeAll(async () => {
  const file = stories260K();
  const addon = await loadAddon();
  if (typeof addon.loadModel !== 'function')
    throw new Error('the native addon has no model engine (loadModel): build it (npm run build:native) before these tests');
  model = await loadModel(file, { threads: 2 });
  const text = fs.readFileSync(path.join(fixturesDir(), 'text', 'tinystories_val.txt'), 'utf8').slice(0, 40000);
  storyIds = model.tokenizer.encode(text, { addSpecial: true });
});

afterAll(async () => {
  await model?.dispose();
});

async function greedy(s: Session, n: number): Promise<{ ids: number[]; text: string }> {
  const ids: number[] = [];
  let text = '';
  for await (const p of s.generate({ maxTokens: n, temperature: 0 })) {
    ids.push(p.token);
    text += p.text;
  }
  return { ids, text };
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k] - b[k]));
  return m;
};

describe('stories260K on the native engine', () => {
  test('model info', () => {
    expect(model.info).toMatchObject({ arch: 'llama', name: 'stories260K', contextLength: 512, nVocab: 512, tensorCount: 48 });
    expect(model.info.weightBytes).toBeGreaterThan(900_000);
  });

  test.each(['f32', 'f16'] as const)('greedy BOS + "Once upon a time" gives llama.cpp\'s 32 tokens (kv %s)', async (kvType) => {
    const s = model.createSession({ kvType });
    expect(model.tokenizer.encode('Once upon a time', { addSpecial: true })).toEqual(PROMPT_IDS);
    await s.append('Once upon a time');
    expect(s.tokenCount).toBe(5);
    const out = await greedy(s, 32);
    expect(out.ids).toEqual(GREEDY_IDS);
    expect(out.text).toBe(GREEDY_TEXT);
    s.dispose();
  });

  test('a stop string ends generation exactly where it starts', async () => {
    const s = model.createSession();
    await s.append('Once upon a time');
    let text = '';
    const it = s.generate({ maxTokens: 32, temperature: 0, stop: [' Lily'] });
    let r = await it.next();
    for (; !r.done; r = await it.next()) text += r.value.text;
    expect(text).toBe(', there was a little girl named');
    // the tokens up to the one that completes ' Lily' were generated (and stay in the stream)
    let n = 1;
    while (!model.tokenizer.decode([1, 403, 407, 261, 378, ...GREEDY_IDS.slice(0, n)]).includes('time, there was a little girl named Lily')) n++;
    expect(r.value).toEqual({ reason: 'stopString', tokens: n });
    expect(s.tokenCount).toBe(5 + n);
    s.dispose();
  });

  test('Λ equals vanilla while the stream is shorter than nLocal; differs after', async () => {
    const ids = storyIds.slice(0, 400);
    const lambda = model.createSession({ kvType: 'f32', chunkSize: 64, attention: { nLocal: 128, nGlobal: 10 } });
    const vanilla = model.createSession({ kvType: 'f32', chunkSize: 64, attention: 'vanilla', maxContext: 512 });
    const l = await lambda.score(ids);
    const v = await vanilla.score(ids);
    expect(l.count).toBe(399);
    // nll[k] is the prediction made at position k (the query at k), local for every key while k < nLocal
    expect(maxAbsDiff(l.nll.subarray(0, 128), v.nll.subarray(0, 128))).toBeLessThan(1e-4);
    expect(maxAbsDiff(l.nll.subarray(128), v.nll.subarray(128))).toBeGreaterThan(1e-3);
    // the default (nLocal = 512) equals vanilla over the whole 400
    const d = model.createSession({ kvType: 'f32', chunkSize: 64 });
    expect(maxAbsDiff((await d.score(ids)).nll, v.nll)).toBeLessThan(1e-4);
    for (const s of [lambda, vanilla, d]) s.dispose();
  });

  test('perplexity against length: vanilla matches llama.cpp (PROVENANCE §1), Λ stays flat past 512', async () => {
    const ids = storyIds.slice(0, 2048); // BOS + text
    const bucket = (nll: Float64Array, a: number, b: number) => nll.subarray(a, b).reduce((x, y) => x + y, 0) / (b - a);
    const edges = [0, 128, 512, 768, 1024, 1536];
    const llamaCpp = [1.394, 1.28, 1.744, 1.653, 1.692]; // nats/token, vanilla llama.cpp, context 2048
    const vanilla = model.createSession({ attention: 'vanilla', maxContext: 2048, chunkSize: 256 });
    const lambda = model.createSession({ chunkSize: 256 });
    const v = (await vanilla.score(ids)).nll;
    const l = (await lambda.score(ids)).nll;
    for (let k = 0; k < llamaCpp.length; k++) expect(Math.abs(bucket(v, edges[k], edges[k + 1]) - llamaCpp[k])).toBeLessThan(0.005);
    for (let k = 2; k < llamaCpp.length; k++) expect(bucket(l, edges[k], edges[k + 1])).toBeLessThan(bucket(v, edges[k], edges[k + 1]) - 0.15);
    expect(lambda.kvBytes).toBeLessThan(vanilla.kvBytes);
    vanilla.dispose();
    lambda.dispose();
  });

  test('text appended in pieces is the text appended whole (no SentencePiece space prefix mid-stream)', async () => {
    const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';
    const cut = text.indexOf(' there');
    const whole = model.createSession({ kvType: 'f32' });
    const pieces = model.createSession({ kvType: 'f32' });
    expect([...whole.tokenize(text)]).toEqual(model.tokenizer.encode(text)); // fresh: BOS and the space prefix
    const a = await whole.score(text);
    const first = await pieces.append(text.slice(0, cut));
    expect([...pieces.tokenize(text.slice(cut))]).toEqual(model.tokenizer.encode(text.slice(cut), { addSpecial: false, spacePrefix: false }));
    const b = await pieces.score(text.slice(cut));
    expect(first.count + b.count).toBe(a.count + 1); // the first piece's BOS is not scored in `a`
    expect(pieces.tokenCount).toBe(whole.tokenCount);
    expect(maxAbsDiff(b.nll, a.nll.subarray(a.count - b.count))).toBeLessThan(1e-4);
    whole.dispose();
    pieces.dispose();
  });

  test('scores do not depend on the chunk size', async () => {
    const ids = storyIds.slice(0, 300);
    const a = model.createSession({ kvType: 'f32', chunkSize: 7, attention: { nLocal: 64 } });
    const b = model.createSession({ kvType: 'f32', chunkSize: 100, attention: { nLocal: 64 } });
    expect(maxAbsDiff((await a.score(ids)).nll, (await b.score(ids)).nll)).toBeLessThan(1e-4);
    a.dispose();
    b.dispose();
  });

  test('a Λ session with nLocal 64 runs 6000 tokens in constant memory with finite NLLs', async () => {
    const s = model.createSession({ attention: { nLocal: 64 }, chunkSize: 128 });
    const bytes = s.kvBytes;
    // K/V is nGlobal + nLocal slots, no more (DESIGN §2): 5 layers x (K + V) x (10 + 64) slots x
    // 4 KV heads x 8 dims x f16.
    expect(bytes).toBe(5 * 2 * (10 + 64) * 4 * 8 * 2);
    const ids = storyIds.slice(0, 6000);
    expect(ids.length).toBe(6000);
    const r = await s.score(ids);
    expect(r.count).toBe(5999);
    expect(r.nll.every(Number.isFinite)).toBe(true);
    const mean = r.totalNll / r.count;
    expect(mean).toBeLessThan(3); // the model keeps working far past its 512-token training length
    expect(s.kvBytes).toBe(bytes);
    expect(s.position).toBe(6000);
    const g = await greedy(s, 20);
    expect(g.ids.length).toBe(20);
    expect(s.kvBytes).toBe(bytes);
    s.dispose();
  });

  test('top-k mode runs past the ring and reports its archive', async () => {
    const s = model.createSession({ attention: { nLocal: 32, nGlobal: 4, topK: { k: 4, fromLayer: 2, maxArchive: 1000 } }, chunkSize: 32 });
    const r = await s.score(storyIds.slice(0, 600));
    expect(r.nll.every(Number.isFinite)).toBe(true);
    expect(s.archiveUsed).toBe(600 - (4 + 32)); // every token past nGlobal + nLocal evicts one key
    s.dispose();
  });

  test('abort between chunks leaves a usable session; dispose makes it unusable', async () => {
    const s = model.createSession({ chunkSize: 16, attention: { nLocal: 64 } });
    const ac = new AbortController();
    await expect(
      s.append(storyIds.slice(0, 200), { signal: ac.signal, onProgress: (p) => p.done >= 32 && ac.abort() }),
    ).rejects.toThrow(AbortError);
    expect(s.tokenCount).toBe(32);
    // the stream continues where it stopped: same NLLs as a session that appended the same 32
    const ref = model.createSession({ chunkSize: 16, attention: { nLocal: 64 } });
    await ref.append(storyIds.slice(0, 32));
    const a = await s.score(storyIds.slice(32, 80));
    const b = await ref.score(storyIds.slice(32, 80));
    expect(maxAbsDiff(a.nll, b.nll)).toBeLessThan(1e-5);
    s.dispose();
    await expect(s.append('more')).rejects.toThrow(DisposedError);
    ref.dispose();
  });

  test('two sessions at once give the same results as one after the other', async () => {
    const work = async (s: Session) => {
      const sc = await s.score(storyIds.slice(0, 250));
      const ids: number[] = [];
      for await (const p of s.generate({ maxTokens: 16, temperature: 0.8, seed: 42 })) ids.push(p.token);
      return { nll: Array.from(sc.nll), ids };
    };
    const mk = () => model.createSession({ chunkSize: 32, attention: { nLocal: 100 } });
    const sequential = [await work(mk()), await work(mk())];
    const [x, y] = await Promise.all([work(mk()), work(mk())]);
    for (const r of [x, y]) {
      expect(r.ids).toEqual(sequential[0].ids);
      expect(maxAbsDiff(r.nll, sequential[0].nll)).toBeLessThan(1e-5);
    }
  });

  test('a disposed model disposes its sessions', async () => {
    const m = await loadModel(stories260K(), { threads: 1 });
    const s = m.createSession();
    await s.append('Once');
    await m.dispose();
    expect(s.disposed).toBe(true);
    await expect(s.append('x')).rejects.toThrow(DisposedError);
    expect(() => m.createSession()).toThrow(DisposedError);
  });
  test('stats counts the native evals and their compute time, which the wall time around them bounds', async () => {
    const s = model.createSession({ attention: { nLocal: 128 }, chunkSize: 32 });
    expect(s.stats).toEqual({ evals: 0, calls: 0, computeSeconds: 0 });
    const t0 = process.hrtime.bigint();
    await s.append(storyIds.slice(0, 100)); // 4 chunks of <= 32
    let steps = 0;
    for await (const _ of s.generate({ maxTokens: 20, temperature: 0 })) steps++;
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    // generate evaluates every sampled token but the last (held back for the next operation)
    expect(s.stats.evals).toBe(4 + steps - 1);
    // The 19 decode evals ran in decode runs (the first token is sampled from the prompt's logits):
    // one native call when they fit the run's 16 ms budget, more on a loaded machine (CI saw 2),
    // but always fewer calls than evals.
    expect(s.stats.calls).toBeGreaterThanOrEqual(4 + 1);
    expect(s.stats.calls).toBeLessThan(s.stats.evals);
    expect(s.stats.computeSeconds).toBeGreaterThan(0);
    expect(s.stats.computeSeconds).toBeLessThan(wall);
    s.dispose();
    expect(() => s.stats).toThrow(DisposedError);
  });
});

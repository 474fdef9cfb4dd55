/** Session logic against the fake native engine (test/session/fakes.ts). */
import { AbortError, DisposedError, InvalidArgumentError, NativeError } from '../../lib/errors';
import type { Session } from '../../lib/session';
import { byteId, fakeModel } from './fakes';

async function collect(it: AsyncGenerator<{ token: number; text: string }, unknown>): Promise<{ tokens: number[]; texts: string[]; result: unknown }> {
  const tokens: number[] = [];
  const texts: string[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { tokens, texts, result: r.value };
    tokens.push(r.value.token);
    texts.push(r.value.text);
  }
}

const TEXT = 'Once upon a time the cat sat. The end.';

describe('append', () => {
  test('the first text append adds BOS; later ones do not; chunks of chunkSize with last-row logits', async () => {
    const { model, native, tokenizer } = fakeModel();
    const s = model.createSession({ chunkSize: 8 });
    const progress: number[] = [];
    const ids = tokenizer.encode(TEXT, { addSpecial: false });
    const r = await s.append(TEXT, { onProgress: (p) => progress.push(p.done / p.total) });
    expect(r.count).toBe(ids.length + 1);
    expect(s.tokenCount).toBe(ids.length + 1);
    expect(s.position).toBe(ids.length + 1);
    const batches = native.contexts[0].batches;
    expect(Array.from(batches[0].tokens.subarray(0, 3))).toEqual([1, ...ids.slice(0, 2)]);
    expect(batches.map((b) => b.tokens.length)).toEqual(Array.from({ length: Math.ceil((ids.length + 1) / 8) }, (_, k) => Math.min(8, ids.length + 1 - 8 * k)));
    expect(batches.every((b) => b.logits === 'last')).toBe(true);
    expect(progress[progress.length - 1]).toBe(1);
    await s.append(' more');
    expect(native.contexts[0].batches[batches.length - 1].tokens[0]).not.toBe(1);
    await s.append([5, 6, 7]);
    expect(Array.from(native.contexts[0].batches.at(-1)!.tokens)).toEqual([5, 6, 7]);
    expect(native.contexts[0].violations).toEqual([]);
  });

  test('token input is taken as given (no BOS) and checked', async () => {
    const { model, native } = fakeModel();
    const s = model.createSession();
    await s.append(Int32Array.of(10, 11));
    expect(Array.from(native.contexts[0].batches[0].tokens)).toEqual([10, 11]);
    await expect(s.append([1, 1e6])).rejects.toThrow(InvalidArgumentError);
    await expect(s.append([1.5])).rejects.toThrow(/token 0/);
    await expect(s.append(42 as never)).rejects.toThrow(InvalidArgumentError);
    expect(s.tokenCount).toBe(2);
  });

  test('a vanilla session refuses a stream past maxContext, all or nothing', async () => {
    const { model } = fakeModel();
    const s = model.createSession({ attention: 'vanilla', maxContext: 20, chunkSize: 4 });
    await s.append(Array.from({ length: 15 }, (_, k) => 260 + (k % 10)));
    await expect(s.append(Array.from({ length: 6 }, () => 270))).rejects.toThrow(/maxContext = 20/);
    expect(s.tokenCount).toBe(15);
    await s.append(Array.from({ length: 5 }, () => 270));
    expect(s.tokenCount).toBe(20);
    const it = s.generate({ maxTokens: 3, temperature: 0 });
    await expect(it.next()).rejects.toThrow(InvalidArgumentError);
  });
});

describe('score', () => {
  test('every scored chunk writes its logits into one reused buffer (no allocation per chunk)', async () => {
    const { model, native, tokenizer } = fakeModel();
    const s = model.createSession({ chunkSize: 16 });
    const ids = tokenizer.encode(TEXT.repeat(4));
    await s.score(ids.slice(0, 50));
    await s.score(ids.slice(50, 90));
    const all = native.contexts[0].batches.filter((b) => b.logits === 'all');
    expect(all.length).toBeGreaterThanOrEqual(6);
    expect(all.every((b) => b.out instanceof Float32Array)).toBe(true);
    expect(new Set(all.map((b) => b.out!.buffer)).size).toBe(1);
    for (const b of all) expect(b.out!.length).toBe(b.tokens.length * native.hparams.nVocab);
    expect(native.contexts[0].violations).toEqual([]);
  });

  test('fresh stream: BOS unscored; NLLs do not depend on chunking', async () => {
    const { model, tokenizer } = fakeModel();
    const a = model.createSession({ chunkSize: 64 });
    const b = model.createSession({ chunkSize: 3 });
    const ra = await a.score(TEXT);
    const rb = await b.score(TEXT);
    const n = tokenizer.encode(TEXT, { addSpecial: false }).length;
    expect(ra.count).toBe(n);
    expect(ra.nll.length).toBe(n);
    expect(ra.startPosition).toBe(1);
    expect(Array.from(ra.nll)).toEqual(Array.from(rb.nll));
    expect(ra.totalNll).toBeCloseTo(ra.nll.reduce((x, y) => x + y, 0), 10);
    expect(ra.nll.every((x) => Number.isFinite(x) && x > 0)).toBe(true);
  });

  test('token input on a fresh stream: its first token has no prediction', async () => {
    const { model } = fakeModel();
    const s = model.createSession();
    const r = await s.score([1, 260, 261, 262]);
    expect(r.count).toBe(3);
    expect(r.startPosition).toBe(1);
  });

  test('scoring continues from the stream: append+score equals one score', async () => {
    const { model } = fakeModel();
    const whole = model.createSession({ chunkSize: 5 });
    const split = model.createSession({ chunkSize: 5 });
    const ids = Array.from({ length: 30 }, (_, k) => 260 + ((k * 7) % 18));
    const all = await whole.score([1, ...ids]);
    await split.append([1, ...ids.slice(0, 11)]);
    const rest = await split.score(ids.slice(11));
    expect(rest.count).toBe(19);
    expect(rest.startPosition).toBe(12);
    expect(Array.from(rest.nll)).toEqual(Array.from(all.nll.subarray(11)));
  });

  test('Λ and vanilla agree while the stream is shorter than nLocal, then differ', async () => {
    const { model } = fakeModel();
    const lambda = model.createSession({ attention: { nLocal: 40, nGlobal: 4 }, chunkSize: 7 });
    const vanilla = model.createSession({ attention: 'vanilla', maxContext: 200, chunkSize: 7 });
    const ids = [1, ...Array.from({ length: 99 }, (_, k) => 260 + ((k * 5) % 18))];
    const l = await lambda.score(ids);
    const v = await vanilla.score(ids);
    expect(Array.from(l.nll.subarray(0, 39))).toEqual(Array.from(v.nll.subarray(0, 39))); // queries at positions < nLocal
    expect(Array.from(l.nll.subarray(40))).not.toEqual(Array.from(v.nll.subarray(40)));
  });
});

describe('a long Λ stream', () => {
  test('constant memory, finite NLLs, slot table checked by the fake on every eval', async () => {
    const { model, native } = fakeModel();
    const s = model.createSession({ attention: { nLocal: 16, nGlobal: 3 }, chunkSize: 8, kvType: 'f32' });
    const bytes = s.kvBytes;
    const ids = [1, ...Array.from({ length: 600 }, (_, k) => 260 + ((k * k) % 18))];
    const r = await s.score(ids);
    expect(r.nll.every(Number.isFinite)).toBe(true);
    expect(s.kvBytes).toBe(bytes);
    expect(native.contexts[0].options.nSlot).toBe(3 + 16); // nGlobal + nLocal, no more
    const out = await collect(s.generate({ maxTokens: 50, temperature: 0.7, seed: 3 }));
    expect(out.tokens.length).toBe(50);
    expect(s.kvBytes).toBe(bytes);
    expect(native.contexts[0].violations).toEqual([]);
  });

  test('top-k: the archive fills, is reported, and overflows with a typed error', async () => {
    const { model, native } = fakeModel();
    const s = model.createSession({ attention: { nLocal: 8, nGlobal: 2, topK: { k: 2, maxArchive: 20 } }, chunkSize: 4 });
    expect(s.options.attention).toEqual({ nGlobal: 2, nLocal: 8, limitDistance: 8, topK: { k: 2, fromLayer: 4, insertAt: 4, maxArchive: 20 } });
    expect(native.contexts[0].options).toMatchObject({ nSlot: 10, nArchive: 20, topKFromLayer: 4 });
    await s.append(Array.from({ length: 26 }, () => 270));
    expect(s.archiveUsed).toBe(16); // every token past nGlobal + nLocal = 10 evicts one key
    await expect(s.append(Array.from({ length: 5 }, () => 270))).rejects.toThrow(/maxArchive/);
    await s.append(Array.from({ length: 4 }, () => 270));
    expect(s.archiveUsed).toBe(20);
    expect(native.contexts[0].violations).toEqual([]);
  });
});

describe('generate', () => {
  test('greedy generation is reproducible, appends each token, and the next operation evaluates the last one', async () => {
    const { model, native } = fakeModel();
    const a = model.createSession();
    await a.append(TEXT);
    const before = a.tokenCount;
    const first = await collect(a.generate({ maxTokens: 6, temperature: 0 }));
    expect(first.result).toEqual({ reason: 'maxTokens', tokens: 6 });
    expect(a.tokenCount).toBe(before + 6);
    const evals = native.contexts[0].batches.length;
    await a.append([262]);
    const last = native.contexts[0].batches[evals];
    expect(Array.from(last.tokens)).toEqual([first.tokens[5], 262]); // pending token + new one
    // a second session on the same prompt gives the same tokens
    const b = model.createSession();
    await b.append(TEXT);
    expect((await collect(b.generate({ maxTokens: 6, temperature: 0 }))).tokens).toEqual(first.tokens);
  });

  test('decoding writes the logits of every token into one reused row (no allocation per token)', async () => {
    const { model, native } = fakeModel();
    const s = model.createSession();
    await s.append(TEXT);
    for await (const _ of s.generate({ maxTokens: 6, temperature: 0 })) void _;
    await s.append(' and');
    const lastBatches = native.contexts[0].batches.filter((b) => b.logits === 'last');
    expect(lastBatches.length).toBeGreaterThan(6);
    const rows = new Set(lastBatches.map((b) => b.out));
    expect(rows.size).toBe(1);
    expect([...rows][0]).toBeInstanceOf(Float32Array);
    expect(native.contexts[0].violations).toEqual([]);
  });

  test('seeded sampling is reproducible; different seeds differ', async () => {
    const run = async (seed: number) => {
      const { model } = fakeModel();
      const s = model.createSession();
      await s.append(TEXT);
      return (await collect(s.generate({ maxTokens: 20, temperature: 1.5, topK: 0, topP: 1, minP: 0, seed }))).tokens;
    };
    expect(await run(11)).toEqual(await run(11));
    expect(await run(11)).not.toEqual(await run(12));
  });

  test('an empty stream starts with BOS', async () => {
    const { model, native } = fakeModel();
    const s = model.createSession();
    await collect(s.generate({ maxTokens: 2, temperature: 0 }));
    expect(native.contexts[0].batches[0].tokens[0]).toBe(1);
    expect(s.tokenCount).toBe(3);
  });

  test('text pieces: never half a UTF-8 character, and they concatenate to the decoded tokens', async () => {
    // é = C3 A9, 😀 = F0 9F 98 80
    const script = [byteId(0x68), byteId(0xc3), byteId(0xa9), byteId(0xf0), byteId(0x9f), byteId(0x98), byteId(0x80), byteId(0x21)];
    const { model, tokenizer } = fakeModel({ script: (p) => script[p] });
    const s = model.createSession();
    await s.append([1]);
    const out = await collect(s.generate({ maxTokens: script.length, temperature: 0 }));
    expect(out.tokens).toEqual(script);
    expect(out.texts).toEqual(['h', '', 'é', '', '', '', '😀', '!']);
    expect(out.texts.join('')).toBe(tokenizer.decode(script));
  });

  test('stop strings are cut exactly, even split across pieces, and never leaked', async () => {
    const word = (w: string) => [...Buffer.from(w, 'utf8')].map(byteId);
    const script = [...word('ab'), ...word('c#'), ...word('#'), ...word('#x'), ...word('yz')];
    const { model } = fakeModel({ script: (p) => script[p] });
    const s = model.createSession();
    await s.append([1]);
    const out = await collect(s.generate({ maxTokens: 20, temperature: 0, stop: ['###', '#y'] }));
    expect(out.texts.join('')).toBe('abc');
    expect(out.result).toEqual({ reason: 'stopString', tokens: 6 }); // a b c # # # → cut at the first '#'
    expect(out.texts.some((t) => t.includes('#'))).toBe(false);
    // a partial match that does not complete is released
    const s2 = model.createSession();
    await s2.append([1]);
    const out2 = await collect(s2.generate({ maxTokens: 5, temperature: 0, stop: ['#z'] }));
    expect(out2.texts.join('')).toBe('abc##');
    expect(out2.texts[3]).toBe(''); // '#' held back until the next piece shows it is not '#z'
  });

  test('end-of-generation and stopTokens end generation without appending the token', async () => {
    const script = [byteId(0x61), byteId(0x62), 2];
    const { model } = fakeModel({ script: (p) => script[p] });
    const s = model.createSession();
    await s.append([1]);
    const out = await collect(s.generate({ maxTokens: 10, temperature: 0 }));
    expect(out.tokens).toEqual([byteId(0x61), byteId(0x62)]);
    expect(out.result).toEqual({ reason: 'stopToken', tokens: 2 });
    expect(s.tokenCount).toBe(3);
    const s2 = model.createSession();
    await s2.append([1]);
    const out2 = await collect(s2.generate({ maxTokens: 10, temperature: 0, stopTokens: [byteId(0x62)] }));
    expect(out2.tokens).toEqual([byteId(0x61)]);
    // a held-back partial stop string is released with the stop token
    const s3 = model.createSession();
    await s3.append([1]);
    const out3 = await collect(s3.generate({ maxTokens: 10, temperature: 0, stop: ['bq'] }));
    expect(out3.texts).toEqual(['a', '', 'b']);
    expect(out3.tokens).toEqual([byteId(0x61), byteId(0x62), 2]);
  });

  test('breaking out of the loop keeps the stream consistent and frees the session', async () => {
    const { model } = fakeModel();
    const s = model.createSession();
    await s.append(TEXT);
    const n0 = s.tokenCount;
    let k = 0;
    for await (const _ of s.generate({ maxTokens: 100, temperature: 0 })) if (++k === 3) break;
    expect(s.tokenCount).toBe(n0 + 3);
    await s.append('x');
    expect(s.tokenCount).toBeGreaterThan(n0 + 3);
  });
});

describe('abort', () => {
  test('append aborts between chunks, keeps the evaluated chunks, and the session stays usable', async () => {
    const { model } = fakeModel({ delayMs: 1 });
    const s = model.createSession({ chunkSize: 4 });
    const ac = new AbortController();
    const p = s.append(Array.from({ length: 40 }, () => 270), {
      signal: ac.signal,
      onProgress: (pr) => {
        if (pr.done === 8) ac.abort();
      },
    });
    await expect(p).rejects.toThrow(AbortError);
    expect(s.tokenCount).toBe(8);
    await s.append([271]);
    expect(s.tokenCount).toBe(9);
  });

  test('an already-aborted signal rejects before any work', async () => {
    const { model, native } = fakeModel();
    const s = model.createSession();
    await expect(s.score('hi', { signal: AbortSignal.abort() })).rejects.toThrow(AbortError);
    expect(native.evals).toBe(0);
  });

  test('generate aborts between tokens', async () => {
    const { model } = fakeModel();
    const s = model.createSession();
    await s.append(TEXT);
    const n0 = s.tokenCount;
    const ac = new AbortController();
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const piece of s.generate({ maxTokens: 50, temperature: 0, signal: ac.signal })) {
          got.push(piece.token);
          if (got.length === 4) ac.abort();
        }
      })(),
    ).rejects.toThrow(AbortError);
    expect(got.length).toBe(4);
    expect(s.tokenCount).toBe(n0 + 4);
    await s.append('ok');
  });

  test('a queued operation whose signal aborts leaves the queue', async () => {
    const { model } = fakeModel({ delayMs: 5 });
    const s = model.createSession({ chunkSize: 2 });
    const ac = new AbortController();
    const first = s.append(Array.from({ length: 10 }, () => 270));
    const second = s.append([271], { signal: ac.signal });
    ac.abort();
    await expect(second).rejects.toThrow(AbortError);
    await first;
    expect(s.tokenCount).toBe(10);
  });
});

describe('concurrency', () => {
  test('operations on one session are queued in call order, never two evals at once', async () => {
    const { model, native } = fakeModel({ delayMs: 1 });
    const s = model.createSession({ chunkSize: 3 });
    await Promise.all([s.append([1, 260, 261, 262, 263]), s.append([264, 265]), s.score([266, 267])]);
    const tokens = native.contexts[0].batches.flatMap((b) => Array.from(b.tokens));
    expect(tokens).toEqual([1, 260, 261, 262, 263, 264, 265, 266, 267]);
    expect(native.contexts[0].violations).toEqual([]);
  });

  test('two sessions at once give what they give one after the other', async () => {
    const prompt = 'the cat sat';
    const runOne = async (s: Session) => {
      const sc = await s.score(TEXT);
      const g = await collect(s.generate({ maxTokens: 10, temperature: 0.9, seed: 5 }));
      await s.append(prompt);
      return { nll: Array.from(sc.nll), tokens: g.tokens };
    };
    const { model: m1, native } = fakeModel({ delayMs: 1 });
    const [x, y] = await Promise.all([runOne(m1.createSession({ chunkSize: 4 })), runOne(m1.createSession({ chunkSize: 4 }))]);
    expect(native.maxActive).toBe(2); // they really overlapped
    const { model: m2 } = fakeModel();
    const z = await runOne(m2.createSession({ chunkSize: 4 }));
    expect(x).toEqual(z);
    expect(y).toEqual(z);
  });
});

describe('dispose', () => {
  test('a disposed session throws DisposedError everywhere', async () => {
    const { model, native } = fakeModel();
    const s = model.createSession();
    await s.append('a');
    s.dispose();
    s.dispose();
    expect(s.disposed).toBe(true);
    expect(native.contexts[0].disposed).toBe(true);
    await expect(s.append('b')).rejects.toThrow(DisposedError);
    await expect(s.score('b')).rejects.toThrow(DisposedError);
    expect(() => s.generate()).toThrow(DisposedError);
    expect(() => s.kvBytes).toThrow(DisposedError);
    expect(model.sessionCount).toBe(0);
  });

  test('disposing during an append waits for the running eval, then the append fails', async () => {
    const { model, native } = fakeModel({ delayMs: 5 });
    const s = model.createSession({ chunkSize: 2 });
    const p = s.append(Array.from({ length: 20 }, () => 270), { onProgress: () => s.dispose() });
    await expect(p).rejects.toThrow(DisposedError);
    expect(native.contexts[0].disposed).toBe(true);
    expect(native.contexts[0].violations).toEqual([]);
  });

  test('model.dispose disposes its sessions, waits for running evals, then frees the weights', async () => {
    const { model, native } = fakeModel({ delayMs: 5 });
    const a = model.createSession();
    const b = model.createSession();
    const running = a.append(Array.from({ length: 10 }, () => 270));
    await new Promise((r) => setTimeout(r, 1));
    await model.dispose();
    await model.dispose();
    await running.catch(() => undefined);
    expect(native.disposed).toBe(true);
    expect(native.disposedWithLiveContexts).toBe(false);
    expect(native.contexts.every((c) => c.violations.length === 0)).toBe(true);
    expect(a.disposed && b.disposed).toBe(true);
    expect(() => model.createSession()).toThrow(DisposedError);
    await expect(b.append('x')).rejects.toThrow(DisposedError);
  });
});

describe('native failures', () => {
  test('a failed eval makes the session unusable with NativeError; other sessions are fine', async () => {
    const { model } = fakeModel({ failEval: 1 });
    const s = model.createSession({ chunkSize: 2 });
    await expect(s.append([1, 2, 3, 4, 5])).rejects.toThrow(NativeError);
    await expect(s.append([6])).rejects.toThrow(/native failure/);
    const t = model.createSession();
    await t.append([1, 2]);
  });
});

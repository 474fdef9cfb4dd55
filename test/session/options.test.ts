/** Option checks name the option; defaults follow DESIGN §1. */
import { InvalidArgumentError } from '../../lib/errors';
import { StopStringFilter } from '../../lib/session';
import { fakeModel } from './fakes';

describe('session options', () => {
  test('defaults: Λ with nLocal = limitDistance = training length, nGlobal 10, top-k off, f16, chunk 512', () => {
    const { model, native } = fakeModel({}, { contextLength: 64 });
    const s = model.createSession();
    expect(s.options.attention).toEqual({ nGlobal: 10, nLocal: 64, limitDistance: 64 });
    expect(s.options).toMatchObject({ kvType: 'f16', chunkSize: 512, threads: 1, topKFromLayer: 5 });
    // K/V for nGlobal + nLocal slots; a chunk is at most nLocal tokens (it overwrites the ring's oldest).
    expect(native.contexts[0].options).toEqual({ nSlot: 10 + 64, nArchive: 0, topKFromLayer: 5, kvType: 'f16', maxBatch: 64, threads: 1 });
    const v = model.createSession({ attention: 'vanilla', chunkSize: 100 });
    expect(native.contexts[1].options).toMatchObject({ nSlot: 64, nArchive: 0, maxBatch: 64 });
    expect(v.options.maxContext).toBe(64);
    const t = model.createSession({ attention: { nLocal: 9, topK: { maxArchive: 100 } }, threads: 3, kvType: 'f32' });
    expect(t.options.attention).toEqual({ nGlobal: 10, nLocal: 9, limitDistance: 9, topK: { k: 5, fromLayer: 4, insertAt: 4, maxArchive: 100 } });
    expect(native.contexts[2].options).toEqual({ nSlot: 10 + 9, nArchive: 100, topKFromLayer: 4, kvType: 'f32', maxBatch: 9, threads: 3 });
    expect(model.createSession({ kvType: 'q8_0' }).options.kvType).toBe('q8_0');
    expect(native.contexts[3].options).toMatchObject({ kvType: 'q8_0' });
  });

  test('a training length too long for a ring by default is refused with a typed error naming the option', () => {
    const { model } = fakeModel({}, { contextLength: 2 ** 31 - 1 });
    expect(() => model.createSession()).toThrow(InvalidArgumentError);
    expect(() => model.createSession()).toThrow(/nLocal defaults to the model's training length, 2147483647; pass a smaller attention\.nLocal/);
    expect(model.createSession({ attention: { nLocal: 256 } }).options.attention).toMatchObject({ nLocal: 256 });
  });

  test.each([
    [{ attention: { nLocal: 0 } }, /attention\.nLocal/],
    [{ attention: { nLocal: NaN } }, /attention\.nLocal/],
    [{ attention: { nLocal: 2.5 } }, /attention\.nLocal/],
    [{ attention: { nGlobal: -1 } }, /attention\.nGlobal/],
    [{ attention: { limitDistance: -3 } }, /attention\.limitDistance/],
    [{ attention: { nlocal: 5 } }, /unknown option attention\.nlocal/],
    [{ attention: 'lambda' }, /attention must be/],
    [{ attention: { topK: { k: 3 } } }, /maxArchive is required/],
    [{ attention: { topK: { k: 0, maxArchive: 5 } } }, /attention\.topK\.k/],
    [{ attention: { topK: { fromLayer: 5, maxArchive: 5 } } }, /attention\.topK\.fromLayer/],
    [{ attention: { topK: { insertAt: -1, maxArchive: 5 } } }, /attention\.topK\.insertAt/],
    [{ attention: { topK: { maxArchive: 0 } } }, /attention\.topK\.maxArchive/],
    [{ chunkSize: 0 }, /chunkSize/],
    [{ chunkSize: 100000 }, /chunkSize/],
    [{ chunkSize: NaN }, /chunkSize/],
    [{ kvType: 'q4_0' }, /kvType must be 'f16', 'f32' or 'q8_0'/],
    [{ threads: 0 }, /threads/],
    [{ maxContext: 100 }, /maxContext applies to attention: 'vanilla' only/],
    [{ attention: 'vanilla', maxContext: 0 }, /maxContext/],
    [{ attention: 'vanilla', maxContext: -5 }, /maxContext/],
    [{ ctx: 5 }, /unknown option ctx/],
    ['fast', /session options must be an object/],
  ])('%j → InvalidArgumentError', (options, message) => {
    const { model, native } = fakeModel();
    expect(() => model.createSession(options as never)).toThrow(InvalidArgumentError);
    expect(() => model.createSession(options as never)).toThrow(message);
    expect(native.contexts.length).toBe(0); // checked before native memory is allocated
  });
});

describe('operation options', () => {
  test.each([
    [{ maxTokens: -1 }, /maxTokens/],
    [{ maxTokens: 1.5 }, /maxTokens/],
    [{ stop: [''] }, /stop/],
    [{ stop: 'x' }, /stop/],
    [{ stopTokens: [1e6] }, /stopTokens/],
    [{ temperature: NaN }, /temperature/],
    [{ topP: 2 }, /topP/],
    [{ penaltyLastN: -1 }, /penaltyLastN/],
    [{ signal: {} }, /signal/],
    [{ maxToken: 5 }, /unknown option maxToken/],
  ])('generate(%j) throws InvalidArgumentError at the call', (options, message) => {
    const { model } = fakeModel();
    const s = model.createSession();
    expect(() => s.generate(options as never)).toThrow(InvalidArgumentError);
    expect(() => s.generate(options as never)).toThrow(message);
  });

  test.each([
    [{ onProgress: 'bar' }, /onProgress/],
    [{ signal: 'stop' }, /signal/],
    [{ parseSpecial: 1 }, /parseSpecial/],
    [{ progress: () => 0 }, /unknown option progress/],
  ])('append(%j) rejects with InvalidArgumentError', async (options, message) => {
    const { model } = fakeModel();
    const s = model.createSession();
    await expect(s.append('x', options as never)).rejects.toThrow(InvalidArgumentError);
    await expect(s.score('x', options as never)).rejects.toThrow(message);
  });
});

describe('StopStringFilter', () => {
  test('holds back exactly the possible starts of a stop string', () => {
    const f = new StopStringFilter(['abc', 'xy']);
    expect(f.push('12a')).toEqual({ text: '12', stopped: false });
    expect(f.push('b')).toEqual({ text: '', stopped: false });
    expect(f.push('d')).toEqual({ text: 'abd', stopped: false });
    expect(f.push('x')).toEqual({ text: '', stopped: false });
    expect(f.push('xy!')).toEqual({ text: 'x', stopped: true });
    const g = new StopStringFilter(['aab']);
    expect(g.push('aaa')).toEqual({ text: 'a', stopped: false }); // 'aa' could still become 'aab'
    expect(g.push('b')).toEqual({ text: '', stopped: true }); // 'a' + '' = 'aaab' cut before 'aab'
    const h = new StopStringFilter(['zz']);
    expect(h.push('az')).toEqual({ text: 'a', stopped: false });
    expect(h.flush()).toBe('z');
    expect(new StopStringFilter([]).push('anything')).toEqual({ text: 'anything', stopped: false });
  });

  test('the earliest of several stop strings wins', () => {
    const f = new StopStringFilter(['world', 'lo w']);
    expect(f.push('hello world')).toEqual({ text: 'hel', stopped: true });
  });
});

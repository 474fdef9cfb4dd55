/** Model-free parts of the server: the SSE parser used by the tests, chat continuation, metrics, CLI value parsers. */
import { parseBytes, parseDuration } from '../../lib/cli/serve';
import type { NativeContext, NativeEvalBatch, NativeModel } from '../../lib/native/types';
import { BatchScheduler } from '../../lib/serve';
import { ChatConversation, type ChatTemplate, fallbackTemplate } from '../../lib/serve/chat-template';
import { Registry } from '../../lib/serve/metrics';
import type { ChatMessage } from '../../lib/serve/params';
import { sseData } from './client';

async function* chunks(text: string, sizes: number[]): AsyncGenerator<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  for (let k = 0; at < bytes.length; k++) {
    const n = sizes[k % sizes.length];
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test('sseData: events split anywhere (inside UTF-8 too), CRLF, comments, multi-line data', async () => {
  const text = 'data: {"a":"é✓"}\n\n: keep-alive\n\ndata: line1\r\ndata: line2\r\n\r\nevent: x\ndata:[DONE]\n\n';
  for (const sizes of [[1], [2, 3], [7], [1000]])
    expect(await collect(sseData(chunks(text, sizes)))).toEqual(['{"a":"é✓"}', 'line1\nline2', '[DONE]']);
  await expect(collect(sseData(chunks('data: cut', [4])))).rejects.toThrow(/ended inside an event/);
});

/** A ChatML-like template (prefix-stable), written out by hand. */
const chatml: ChatTemplate = {
  source: 'option',
  stop: [],
  render: (ms, gp) => ms.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + (gp ? '<|im_start|>assistant\n' : ''),
};

describe('ChatConversation appends only the new part of the conversation', () => {
  const user = (content: string): ChatMessage => ({ role: 'user', content });

  test('prefix-stable template: the reply is closed with the template\'s end-of-turn, then the new turn', () => {
    const c = new ChatConversation();
    const p1 = c.prepare(chatml, [{ role: 'system', content: 'Be brief.' }, user('Hi')]);
    expect(p1.text).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    p1.commit();
    c.reply('Hello!');
    const p2 = c.prepare(chatml, [user('More')]);
    expect(p2.text).toBe('<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n');
    p2.commit();
    expect(c.turns).toBe(2);
  });

  test('a template that reformats replies (fallback: "assistant: " + content) still continues after the reply', () => {
    const c = new ChatConversation();
    const t = fallbackTemplate();
    const p1 = c.prepare(t, [user('Hi')]);
    expect(p1.text).toBe('user: Hi\nassistant:');
    p1.commit();
    c.reply(' Hello there.');
    expect(c.prepare(t, [user('More')]).text).toBe('\nuser: More\nassistant:');
    const trimming: ChatTemplate = { ...chatml, render: (ms, gp) => chatml.render(ms.map((m) => ({ ...m, content: m.content.trim() })), gp) };
    const d = new ChatConversation();
    d.prepare(trimming, [user('Hi')]).commit();
    d.reply('  Hello  ');
    expect(d.prepare(trimming, [user('x')]).text).toBe('<|im_end|>\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n');
  });

  test('only the last turn is kept: a long conversation renders in constant time and memory', () => {
    const c = new ChatConversation();
    let rendered = 0;
    const counting: ChatTemplate = { ...chatml, render: (ms, gp) => ((rendered += ms.length), chatml.render(ms, gp)) };
    for (let k = 0; k < 1000; k++) {
      const before = rendered;
      const p = c.prepare(counting, [user(`turn ${k}`)]);
      if (k > 0) expect(p.text).toBe(`<|im_end|>\n<|im_start|>user\nturn ${k}<|im_end|>\n<|im_start|>assistant\n`);
      expect(rendered - before).toBeLessThanOrEqual(6);
      p.commit();
      c.reply(`reply ${k}`);
    }
  });

  test('a template that rewrites earlier turns: the new messages are rendered alone', () => {
    const counting: ChatTemplate = { ...chatml, render: (ms, gp) => `[${ms.length}]` + chatml.render(ms, gp) };
    const c = new ChatConversation();
    c.prepare(counting, [user('a')]).commit();
    c.reply('b');
    expect(c.prepare(counting, [user('c')]).text).toBe('[1]<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n');
  });

  test('nothing is recorded until commit()', () => {
    const c = new ChatConversation();
    c.prepare(chatml, [user('lost')]);
    expect(c.turns).toBe(0);
  });
});

test('Prometheus registry: counters with labels, gauges, cumulative histograms, escaping', () => {
  const r = new Registry();
  const c = r.counter('x_total', 'Things.');
  c.inc({ route: '/a"b\\' });
  c.inc({ route: '/a"b\\' }, 2);
  r.gauge('g', 'A gauge.', () => Infinity);
  const h = r.histogram('h_seconds', 'Times.', [0.1, 1]);
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  expect(r.render()).toBe(
    [
      '# HELP x_total Things.',
      '# TYPE x_total counter',
      'x_total{route="/a\\"b\\\\"} 3',
      '# HELP g A gauge.',
      '# TYPE g gauge',
      'g +Inf',
      '# HELP h_seconds Times.',
      '# TYPE h_seconds histogram',
      'h_seconds_bucket{le="0.1"} 1',
      'h_seconds_bucket{le="1"} 2',
      'h_seconds_bucket{le="+Inf"} 3',
      'h_seconds_sum 5.55',
      'h_seconds_count 3',
      '',
    ].join('\n'),
  );
});

test('CLI value parsers: durations and sizes', () => {
  expect(parseDuration('500ms')).toBe(500);
  expect(parseDuration('30')).toBe(30_000);
  expect(parseDuration('10m')).toBe(600_000);
  expect(parseDuration('1.5h')).toBe(5_400_000);
  expect(() => parseDuration('soon')).toThrow();
  expect(parseBytes('4g')).toBe(4 * 2 ** 30);
  expect(parseBytes('512KiB')).toBe(512 * 1024);
  expect(parseBytes('1048576')).toBe(1048576);
  expect(parseBytes('inf')).toBe(Infinity);
  expect(() => parseBytes('-1')).toThrow();
  expect(() => parseBytes('lots')).toThrow();
});

describe('BatchScheduler', () => {
  type Item = { context: NativeContext; batch: NativeEvalBatch };
  const ctx = (name: string) => ({ name }) as unknown as NativeContext;
  const batch = (n: number) => ({ tokens: new Int32Array(n) }) as NativeEvalBatch;

  function fakeModel(fail?: (items: Item[]) => boolean): { model: NativeModel; passes: string[][] } {
    const passes: string[][] = [];
    const model = {
      async evalMany(items: Item[]) {
        if (fail?.(items)) throw Object.assign(new Error('bad batch'), { code: 'INVALID_ARGUMENT' });
        passes.push(items.map((i) => (i.context as unknown as { name: string }).name));
        return items.map((i) => Float32Array.of(i.batch.tokens.length));
      },
    } as unknown as NativeModel;
    return { model, passes };
  }

  test('FIFO within the token budget: a request that does not fit goes first in the next pass', async () => {
    const { model, passes } = fakeModel();
    const s = new BatchScheduler({ maxBatchTokens: 130 });
    const sizes: [string, number][] = [['A', 100], ['B', 1], ['C', 100], ['D', 1], ['E', 28]];
    const outs = await Promise.all(sizes.map(([name, n]) => s.eval({ model, context: ctx(name), batch: batch(n) })));
    expect(outs.map((o) => o[0])).toEqual([100, 1, 100, 1, 28]);
    expect(passes).toEqual([['A', 'B', 'D', 'E'], ['C']]);
    expect(s.steps).toBe(2);
    expect(s.tokens).toBe(230);
  });

  test('one invalid batch fails alone; the others of its pass still run', async () => {
    const { model, passes } = fakeModel((items) => items.some((i) => (i.context as unknown as { name: string }).name === 'bad'));
    const s = new BatchScheduler();
    const results = await Promise.allSettled(['x', 'bad', 'y'].map((name) => s.eval({ model, context: ctx(name), batch: batch(1) })));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(passes).toEqual([['x'], ['y']]);
  });
});

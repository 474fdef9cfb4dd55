/**
 * The HTTP server against a real client (fetch + SSE parser) on loopback, with stories260K
 * (LMI_FIXTURES, default ../shared/fixtures). Greedy outputs are compared with Session.generate
 * run in-process on the same model.
 */
import * as http from 'http';
import type { AddressInfo } from 'net';

import { loadModel, type Model } from '../../lib/model';
import { loadAddon } from '../../lib/native/addon';
import { createHandler } from '../../lib/serve';
import { FALLBACK_STOP } from '../../lib/serve/chat-template';
import { stories260K } from '../model/fixtures';
import { Client, type TestServer, sleep, startServer, waitFor } from './client';

let model: Model;
let srv: TestServer;

beforeAll(async () => {
  const addon = await loadAddon();
  if (typeof addon.loadModel !== 'function') throw new Error('the native addon has no model engine: npm run build:native first');
  model = await loadModel(stories260K(), { threads: 1 });
  srv = await startServer({ model, maxTokensLimit: 100_000 });
});

afterAll(async () => {
  await srv?.close();
  await model?.dispose();
});

/** Greedy continuation in-process: append each text in turn, generate after each (maxTokens, stop). */
async function inProcess(turns: { append: string; maxTokens: number; stop?: string[] }[]): Promise<string[]> {
  const s = model.createSession();
  const out: string[] = [];
  for (const t of turns) {
    await s.append(t.append, { parseSpecial: false });
    let text = '';
    for await (const p of s.generate({ maxTokens: t.maxTokens, temperature: 0, stop: t.stop })) text += p.text;
    out.push(text);
  }
  s.dispose();
  return out;
}

/** How a session tokenizes text that continues its stream: no BOS, no SentencePiece space prefix. */
const CONTINUATION = { addSpecial: false, spacePrefix: false };

const STORY = ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw';

describe('completions', () => {
  test('greedy, not streamed: the same text as Session.generate in-process', async () => {
    const [want] = await inProcess([{ append: 'Once upon a time', maxTokens: 32 }]);
    expect(want).toBe(STORY);
    const r = await srv.client.json('/v1/completions', { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 32, temperature: 0 });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      object: 'text_completion',
      model: 'stories260K',
      choices: [{ index: 0, text: want, finish_reason: 'length', logprobs: null }],
      usage: { prompt_tokens: 5, completion_tokens: 32, total_tokens: 37 },
    });
    expect(r.body.id).toMatch(/^cmpl-/);
  });

  test('greedy, streamed: deltas add up to the same text, then finish_reason, usage and [DONE]', async () => {
    const r = await srv.client.stream('/v1/completions', { prompt: ['Once upon a time'], max_tokens: 32, temperature: 0, stream_options: { include_usage: true } });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(r.text).toBe(STORY);
    expect(r.done).toBe(true);
    expect(r.finishReason).toBe('length');
    expect(r.events.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 32 } });
    expect(new Set(r.events.map((e) => e.id)).size).toBe(1);
  });

  test('a stop string ends the text where it starts (finish_reason stop); token-id prompts work', async () => {
    const r = await srv.client.json('/v1/completions', { prompt: [1, 403, 407, 261, 378], max_tokens: 32, temperature: 0, stop: [' Lily'] });
    expect(r.body.choices[0]).toMatchObject({ text: ', there was a little girl named', finish_reason: 'stop' });
  });

  test('concurrent greedy streams are batched and each equals the single-client run', async () => {
    const prompts = ['Once upon a time', 'The cat', 'Tom and Sue', 'One day', 'A little dog', 'The sun', 'Lily had a ball', 'Once upon a time'];
    const want = await Promise.all(prompts.map(async (p) => (await inProcess([{ append: p, maxTokens: 40 }]))[0]));
    const steps0 = srv.handler.scheduler.steps;
    const tokens0 = srv.handler.scheduler.tokens;
    const got = await Promise.all(prompts.map((p) => srv.client.stream('/v1/completions', { prompt: p, max_tokens: 40, temperature: 0 })));
    expect(got.map((g) => g.text)).toEqual(want);
    const steps = srv.handler.scheduler.steps - steps0;
    const tokens = srv.handler.scheduler.tokens - tokens0;
    expect(tokens / steps).toBeGreaterThan(2.5); // sequences share forward passes
  });
});

describe('chat', () => {
  test('fallback template (stories260K has none): prompt, stops and greedy text as in-process', async () => {
    const prompt = 'system: You tell stories.\nuser: Tell me about Lily.\nassistant:';
    const [want] = await inProcess([{ append: prompt, maxTokens: 24, stop: FALLBACK_STOP }]);
    const messages = [
      { role: 'system', content: 'You tell stories.' },
      { role: 'user', content: [{ type: 'text', text: 'Tell me about ' }, { type: 'text', text: 'Lily.' }] },
    ];
    const r = await srv.client.json('/v1/chat/completions', { messages, max_tokens: 24, temperature: 0 });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: want } }] });
    expect(r.body.usage.prompt_tokens).toBe(model.tokenizer.encode(prompt, { addSpecial: true }).length);
    const s = await srv.client.stream('/v1/chat/completions', { messages, max_tokens: 24, temperature: 0 });
    expect(s.events[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(s.events.every((e) => e.object === 'chat.completion.chunk')).toBe(true);
    expect(s.text).toBe(want);
    expect(s.done).toBe(true);
  });

  test('a Jinja chat template (option) is rendered with @huggingface/jinja; a refusal is a 400', async () => {
    const template =
      "{% for m in messages %}{% if m.role == 'bot' %}{{ raise_exception('no bots') }}{% endif %}" +
      '<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}';
    const t = await startServer({ model, chatTemplate: template });
    try {
      const r = await t.client.json('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0 });
      expect(r.body).toMatchObject({ object: 'chat.completion' });
      const rendered = '<|user|>Hi\n<|assistant|>';
      expect(r.body.usage.prompt_tokens).toBe(model.tokenizer.encode(rendered, { addSpecial: true, parseSpecial: true }).length);
    } finally {
      await t.close();
    }
    const refusing = await startServer({ model, chatTemplate: "{{ raise_exception('no') }}" });
    try {
      const bad = await refusing.client.json('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }] });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatchObject({ code: 'chat_template_error', param: 'messages' });
    } finally {
      await refusing.close();
    }
  });
});

describe('persistent sessions', () => {
  test('a completion session continues its stream: each request costs only its new tokens', async () => {
    const want = await inProcess([
      { append: 'Once upon a time', maxTokens: 12 },
      { append: ' Then', maxTokens: 12 },
      { append: ' The end. Once', maxTokens: 12 },
    ]);
    const a = await srv.client.json('/v1/completions', { prompt: 'Once upon a time', max_tokens: 12, temperature: 0, session_id: 'story-1' });
    expect(a.headers.get('x-session-id')).toBe('story-1');
    expect(a.body).toMatchObject({ session_id: 'story-1', choices: [{ text: want[0] }], usage: { prompt_tokens: 5 } });
    const b = await srv.client.json('/v1/completions', { prompt: ' Then', max_tokens: 12, temperature: 0 }, { headers: { 'X-Session-Id': 'story-1' } });
    expect(b.body.choices[0].text).toBe(want[1]);
    expect(b.body.usage.prompt_tokens).toBe(model.tokenizer.encode(' Then', CONTINUATION).length); // no BOS, no history re-sent
    const c = await srv.client.stream('/v1/completions', { prompt: ' The end. Once', max_tokens: 12, temperature: 0, session: 'story-1' });
    expect(c.text).toBe(want[2]);
    const info = await srv.client.json('/v1/sessions/story-1');
    expect(info.body).toMatchObject({ id: 'story-1', kind: 'completion', requests: 3, busy: false });
    expect(info.body.tokens).toBe(5 + 12 + b.body.usage.prompt_tokens + 12 + model.tokenizer.encode(' The end. Once', CONTINUATION).length + 12);
    expect((await srv.client.json('/v1/sessions/story-1', undefined, { method: 'DELETE' })).body).toMatchObject({ deleted: true });
    expect((await srv.client.json('/v1/sessions/story-1')).status).toBe(404);
  });

  test('a session keeps constant memory over a long conversation (Λ), far past the training length', async () => {
    const t = await startServer({ model, session: { attention: { nLocal: 64 }, chunkSize: 32 }, maxTokensLimit: 100_000 });
    try {
      const first = await t.client.json('/v1/completions', { prompt: 'Once upon a time', max_tokens: 300, temperature: 0.8, seed: 1, session_id: 'long' });
      expect(first.status).toBe(200);
      const kv = (await t.client.json('/v1/sessions/long')).body.kv_bytes;
      for (let k = 0; k < 4; k++) {
        const r = await t.client.json('/v1/completions', { prompt: ' And then', max_tokens: 300, temperature: 0.8, seed: k, session_id: 'long' });
        expect(r.body.usage.prompt_tokens).toBe(model.tokenizer.encode(' And then', CONTINUATION).length);
      }
      const info = (await t.client.json('/v1/sessions/long')).body;
      expect(info.tokens).toBeGreaterThan(1000); // past the 512-token training length
      expect(info.kv_bytes).toBe(kv);
      expect(t.handler.sessions.kvBytes).toBe(kv);
    } finally {
      await t.close();
    }
  });

  test('a chat session continues the conversation, appending only the new turn', async () => {
    const turn1 = 'user: Hello.\nassistant:';
    const t1 = await srv.client.json('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hello.' }], max_tokens: 10, temperature: 0, session_id: 'chat-1' });
    expect(t1.status).toBe(200);
    const reply1: string = t1.body.choices[0].message.content;
    const t2 = await srv.client.json('/v1/chat/completions', { messages: [{ role: 'user', content: 'More.' }], max_tokens: 10, temperature: 0, session_id: 'chat-1' });
    // in-process: the same stream, turn by turn (the fallback closes a reply with "\n")
    const [w1, w2] = await inProcess([
      { append: turn1, maxTokens: 10, stop: FALLBACK_STOP },
      { append: '\nuser: More.\nassistant:', maxTokens: 10, stop: FALLBACK_STOP },
    ]);
    expect(reply1).toBe(w1);
    expect(t2.body.choices[0].message.content).toBe(w2);
    expect(t2.body.usage.prompt_tokens).toBe(model.tokenizer.encode('\nuser: More.\nassistant:', CONTINUATION).length);
    // a chat session cannot take a completions request
    const mixed = await srv.client.json('/v1/completions', { prompt: 'x', session_id: 'chat-1' });
    expect(mixed.status).toBe(400);
    expect(mixed.body.error.code).toBe('session_kind_mismatch');
  });

  test('idle sessions expire after the TTL (410 after, metric counted); DELETE frees the id', async () => {
    const t = await startServer({ model, sessionTtlMs: 150 });
    try {
      expect((await t.client.json('/v1/completions', { prompt: 'Once', max_tokens: 2, session_id: 'short' })).status).toBe(200);
      expect(t.handler.sessions.persistentCount).toBe(1);
      await waitFor(() => t.handler.sessions.persistentCount === 0, 3000); // the sweeper
      const r = await t.client.json('/v1/completions', { prompt: 'Once', max_tokens: 2, session_id: 'short' });
      expect(r.status).toBe(410);
      expect(r.body.error).toMatchObject({ code: 'session_expired', param: 'session_id', type: 'invalid_request_error' });
      expect(t.handler.metricsText()).toMatch(/^lmi_sessions_expired_total 1$/m);
      expect(t.handler.sessions.kvBytes).toBe(0);
      expect((await t.client.json('/v1/sessions/short', undefined, { method: 'DELETE' })).status).toBe(200);
      expect((await t.client.json('/v1/completions', { prompt: 'Once', max_tokens: 2, session_id: 'short' })).status).toBe(200);
    } finally {
      await t.close();
    }
  });

  test('limits: 429 past maxSessions, 503 past maxKvBytes, 409 for a busy session', async () => {
    const t = await startServer({ model, maxSessions: 2, maxTokensLimit: 100_000 });
    try {
      for (const id of ['a', 'b']) expect((await t.client.json('/v1/completions', { prompt: 'Hi', max_tokens: 1, session_id: id })).status).toBe(200);
      const r = await t.client.json('/v1/completions', { prompt: 'Hi', max_tokens: 1, session_id: 'c' });
      expect(r.status).toBe(429);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(r.body.error).toMatchObject({ type: 'rate_limit_error', code: 'too_many_sessions' });
      expect((await t.client.json('/v1/completions', { prompt: 'Hi', max_tokens: 1 })).status).toBe(429); // one-off sessions count too
      expect((await t.client.json('/v1/completions', { prompt: 'Hi', max_tokens: 1, session_id: 'a' })).status).toBe(200); // existing ones still work

      // busy: a long stream holds session a; a second request for it gets 409
      const ctl = new AbortController();
      let started!: () => void;
      const running = new Promise<void>((resolve) => (started = resolve));
      const long = t.client.stream('/v1/completions', { prompt: ' and', max_tokens: 100_000, session_id: 'a' }, { signal: ctl.signal, onEvent: () => started() });
      await running;
      const busy = await t.client.json('/v1/completions', { prompt: 'x', session_id: 'a' });
      expect(busy.status).toBe(409);
      expect(busy.body.error.code).toBe('session_busy');
      ctl.abort();
      await long;
    } finally {
      await t.close();
    }
    const perSession = srv.handler.sessions.sessionKvBytes();
    const k = await startServer({ model, maxKvBytes: Math.floor(perSession * 2.5) });
    try {
      for (const id of ['a', 'b']) expect((await k.client.json('/v1/completions', { prompt: 'Hi', max_tokens: 1, session_id: id })).status).toBe(200);
      const r = await k.client.json('/v1/completions', { prompt: 'Hi', max_tokens: 1 });
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).not.toBeNull();
      expect(r.body.error).toMatchObject({ type: 'server_error', code: 'kv_memory_exhausted' });
      expect(k.handler.sessions.kvBytes).toBe(2 * perSession);
    } finally {
      await k.close();
    }
  });
});

describe('bad input never hurts the server or other sessions', () => {
  test('malformed, mistyped, absurd and unsupported requests get OpenAI-style 4xx errors', async () => {
    // a generation running on another session all along
    const bystander = srv.client.stream('/v1/completions', { prompt: 'Once upon a time', max_tokens: 32, temperature: 0, session_id: 'bystander' });
    const post = (body: unknown, path = '/v1/completions') => srv.client.json(path, body);
    const raw = (data: string | Uint8Array, path = '/v1/completions') => srv.client.json(path, undefined, { raw: data });
    const cases: [string, Promise<{ status: number; body: any }>, number, string | null, string | null][] = [
      ['malformed JSON', raw('{"prompt": "x",'), 400, 'invalid_json', null],
      ['empty body', raw(''), 400, 'invalid_json', null],
      ['not an object', post([1, 2]), 400, 'invalid_type', null],
      ['invalid UTF-8', raw(new Uint8Array([0x7b, 0x22, 0x70, 0xff, 0xfe, 0x22, 0x7d])), 400, 'invalid_utf8', null],
      ['huge body', raw('{"prompt":"' + 'x'.repeat(5 << 20) + '"}'), 413, 'body_too_large', null],
      ['unknown model', post({ model: 'gpt-4', prompt: 'x' }), 404, 'model_not_found', 'model'],
      ['missing prompt', post({ max_tokens: 3 }), 400, 'missing_required_parameter', 'prompt'],
      ['prompt of wrong type', post({ prompt: 5 }), 400, 'invalid_type', 'prompt'],
      ['several prompts', post({ prompt: ['a', 'b'] }), 400, 'unsupported_parameter', 'prompt'],
      ['bad token id', post({ prompt: [1, 99999] }), 400, 'invalid_value', 'prompt'],
      ['max_tokens as string', post({ prompt: 'x', max_tokens: '10' }), 400, 'invalid_type', 'max_tokens'],
      ['negative max_tokens', post({ prompt: 'x', max_tokens: -5 }), 400, 'invalid_value', 'max_tokens'],
      ['absurd max_tokens', post({ prompt: 'x', max_tokens: 1e12 }), 400, 'invalid_value', 'max_tokens'],
      ['fractional max_tokens', post({ prompt: 'x', max_tokens: 2.5 }), 400, 'invalid_type', 'max_tokens'],
      ['negative temperature', post({ prompt: 'x', temperature: -1 }), 400, 'invalid_value', 'temperature'],
      ['temperature NaN-ish', post({ prompt: 'x', temperature: 'hot' }), 400, 'invalid_type', 'temperature'],
      ['top_p > 1', post({ prompt: 'x', top_p: 1.5 }), 400, 'invalid_value', 'top_p'],
      ['top_p = 0', post({ prompt: 'x', top_p: 0 }), 400, 'invalid_value', 'top_p'],
      ['n > 1', post({ prompt: 'x', n: 2 }), 400, 'unsupported_parameter', 'n'],
      ['best_of > 1', post({ prompt: 'x', best_of: 3 }), 400, 'unsupported_parameter', 'best_of'],
      ['logprobs', post({ prompt: 'x', logprobs: 5 }), 400, 'unsupported_parameter', 'logprobs'],
      ['echo', post({ prompt: 'x', echo: true }), 400, 'unsupported_parameter', 'echo'],
      ['stop of wrong type', post({ prompt: 'x', stop: 7 }), 400, 'invalid_type', 'stop'],
      ['too many stops', post({ prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }), 400, 'invalid_value', 'stop'],
      ['logit_bias out of range', post({ prompt: 'x', logit_bias: { '5': 1000 } }), 400, 'invalid_value', 'logit_bias'],
      ['logit_bias bad id', post({ prompt: 'x', logit_bias: { foo: 1 } }), 400, 'invalid_value', 'logit_bias'],
      ['stream not boolean', post({ prompt: 'x', stream: 'yes' }), 400, 'invalid_type', 'stream'],
      ['stream_options without stream', post({ prompt: 'x', stream_options: { include_usage: true } }), 400, 'invalid_value', 'stream_options'],
      ['bad session id', post({ prompt: 'x', session_id: 'no spaces allowed' }), 400, 'invalid_value', 'session_id'],
      ['prompt past the limit', post({ prompt: 'Once upon a time '.repeat(5000) }), 400, 'context_length_exceeded', 'prompt'],
      ['chat: messages missing', post({}, '/v1/chat/completions'), 400, 'missing_required_parameter', 'messages'],
      ['chat: messages not an array', post({ messages: 'hi' }, '/v1/chat/completions'), 400, 'invalid_type', 'messages'],
      ['chat: no messages', post({ messages: [] }, '/v1/chat/completions'), 400, 'invalid_value', 'messages'],
      ['chat: unknown role', post({ messages: [{ role: 'bot', content: 'x' }] }, '/v1/chat/completions'), 400, 'invalid_value', 'messages[0].role'],
      ['chat: image content', post({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, '/v1/chat/completions'), 400, 'unsupported_parameter', 'messages[0].content'],
      ['chat: tools', post({ messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function' }] }, '/v1/chat/completions'), 400, 'unsupported_parameter', 'tools'],
      ['chat: json mode', post({ messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }, '/v1/chat/completions'), 400, 'unsupported_parameter', 'response_format'],
      ['unknown route', srv.client.json('/v1/embeddings', { input: 'x' }), 404, 'unknown_route', null],
      ['wrong method', srv.client.json('/v1/completions'), 405, 'method_not_allowed', null],
      ['unknown session', srv.client.json('/v1/sessions/nope'), 404, 'session_not_found', 'session_id'],
      ['malformed path', srv.client.json('/v1/sessions/%E0%A4%A'), 400, 'invalid_path', null],
    ];
    for (const [name, request, status, code, param] of cases) {
      const r = await request;
      try {
        expect(r.status).toBe(status);
        expect(r.body).toEqual({ error: { message: expect.any(String), type: expect.any(String), param, code } });
      } catch (err) {
        throw new Error(`${name}: ${(err as Error).message}\n${JSON.stringify(r.body).slice(0, 300)}`);
      }
    }
    // a lone surrogate in a JSON string is valid JSON: the prompt is tokenized, not refused
    expect((await raw('{"prompt":"a\\ud800b","max_tokens":2}')).status).toBe(200);
    const b = await bystander;
    expect(b.text).toBe(STORY);
    expect((await srv.client.json('/health')).body.status).toBe('ok');
    expect(srv.handler.sessions.busyCount).toBe(0);
  });
});

describe('cancellation', () => {
  test('a client that disconnects mid-stream stops its generation; the server stays healthy', async () => {
    const before = Number(/^lmi_requests_cancelled_total\{reason="disconnect"\} (\d+)$/m.exec(srv.handler.metricsText())?.[1] ?? 0);
    const r = await srv.client.stream('/v1/completions', { prompt: 'Once', max_tokens: 100_000, session_id: 'gone' }, { onEvent: (_e, n) => n < 5 });
    expect(r.done).toBe(false);
    await waitFor(async () => (await srv.client.json('/v1/sessions/gone')).body.busy === false, 5000);
    const tokens = (await srv.client.json('/v1/sessions/gone')).body.tokens;
    expect(tokens).toBeLessThan(1000);
    await sleep(100);
    expect((await srv.client.json('/v1/sessions/gone')).body.tokens).toBe(tokens); // nothing runs any more
    expect(srv.handler.metricsText()).toMatch(new RegExp(`^lmi_requests_cancelled_total\\{reason="disconnect"\\} ${before + 1}$`, 'm'));
    expect(srv.handler.metricsText()).toMatch(/^lmi_http_requests_total\{route="\/v1\/completions",method="POST",status="499"\} \d+$/m);
    expect((await srv.client.json('/v1/completions', { prompt: 'Once upon a time', max_tokens: 32, temperature: 0 })).body.choices[0].text).toBe(STORY);
    // the session survives its cancelled request and continues
    expect((await srv.client.json('/v1/completions', { prompt: ' The end.', max_tokens: 3, session_id: 'gone' })).status).toBe(200);
  });

  test('a request past the timeout stops: 504 when not streamed, an error event when streamed', async () => {
    const t = await startServer({ model, requestTimeoutMs: 150, maxTokensLimit: 1_000_000 });
    try {
      const r = await t.client.json('/v1/completions', { prompt: 'Once', max_tokens: 1_000_000 });
      expect(r.status).toBe(504);
      expect(r.body.error).toMatchObject({ type: 'timeout_error', code: 'request_timeout' });
      const s = await t.client.stream('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1_000_000, stop: ['zzzz'] });
      expect(s.status).toBe(200);
      expect(s.events.at(-1)).toMatchObject({ error: { code: 'request_timeout' } });
      expect(s.done).toBe(true);
      expect(t.handler.sessions.size).toBe(0);
    } finally {
      await t.close();
    }
  });
});

describe('models, health, metrics, framework use', () => {
  test('GET /v1/models and /health', async () => {
    const m = await srv.client.json('/v1/models');
    expect(m.body).toMatchObject({ object: 'list', data: [{ id: 'stories260K', object: 'model', owned_by: 'lm-infinite', context_length: 512 }] });
    expect((await srv.client.json('/v1/models/stories260K')).body.id).toBe('stories260K');
    expect((await srv.client.json('/health')).body).toMatchObject({ status: 'ok', model: 'stories260K' });
  });

  test('/metrics is valid Prometheus text with the server metrics', async () => {
    await srv.client.json('/v1/completions', { prompt: 'Once', max_tokens: 3 });
    const res = await fetch(`${srv.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const types = new Map<string, string>();
    const samples = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (line === '') continue;
      let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
      if (m) {
        if (m[1] === 'TYPE') types.set(m[2], m[3]);
        continue;
      }
      m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/.exec(line);
      if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
      samples.set(m[1] + (m[2] ?? ''), Number(m[3]));
      const family = m[1].replace(/_(bucket|sum|count)$/, '');
      expect(types.has(m[1]) || types.get(family) === 'histogram').toBe(true);
    }
    for (const name of ['lmi_http_requests_total', 'lmi_generated_tokens_total', 'lmi_sessions_active', 'lmi_kv_bytes', 'lmi_scheduler_queue_depth', 'lmi_http_request_duration_seconds'])
      expect(types.has(name)).toBe(true);
    expect(types.get('lmi_http_request_duration_seconds')).toBe('histogram');
    expect(samples.get('lmi_generated_tokens_total')).toBeGreaterThan(0);
    expect(samples.get('lmi_http_requests_total{route="/v1/completions",method="POST",status="200"}')).toBeGreaterThan(0);
    expect(samples.get('lmi_kv_bytes')).toBe(srv.handler.sessions.kvBytes);
    // histogram buckets are cumulative
    const buckets = [...samples.entries()].filter(([k]) => k.startsWith('lmi_http_request_duration_seconds_bucket{route="/v1/completions"')).map(([, v]) => v);
    expect(buckets.length).toBeGreaterThan(5);
    for (let k = 1; k < buckets.length; k++) expect(buckets[k]).toBeGreaterThanOrEqual(buckets[k - 1]);
  });

  test('the raw (req, res, next) contract: unknown paths go to next(); a pre-parsed req.body is used', async () => {
    const handler = createHandler({ model });
    const server = http.createServer((req, res) => {
      if (req.url === '/parsed') {
        // what a body parser (express.json()) leaves behind: the stream consumed, req.body set
        let data = '';
        req.on('data', (c) => (data += c));
        req.on('end', () => {
          (req as typeof req & { body: unknown }).body = JSON.parse(data);
          req.url = '/v1/completions';
          handler(req, res, () => res.end('next'));
        });
        return;
      }
      handler(req, res, () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('from next');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = new Client(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      expect((await client.json('/somewhere/else')).body).toBe('from next');
      const r = await client.json('/parsed', { prompt: 'Once upon a time', max_tokens: 32, temperature: 0 });
      expect(r.body.choices[0].text).toBe(STORY);
    } finally {
      await handler.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

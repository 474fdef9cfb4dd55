/**
 * A small OpenAI-style client for the server tests and benchmarks: fetch plus an SSE parser (no
 * `openai` package), and a server started on a loopback port chosen by the OS.
 */
import * as http from 'http';
import type { AddressInfo } from 'net';

import { createHandler, type ServeHandler, type ServeOptions } from '../../lib/serve';

/** The `data:` payloads of a text/event-stream, one per event (multi-line data joined by \n). */
export async function* sseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  const flush = function* (final: boolean): Generator<string> {
    for (;;) {
      const m = /\r?\n\r?\n/.exec(buffer);
      if (m === null) break;
      const block = buffer.slice(0, m.index);
      buffer = buffer.slice(m.index + m[0].length);
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''));
      if (data.length > 0) yield data.join('\n');
    }
    if (final && buffer.trim() !== '') throw new Error(`SSE stream ended inside an event: ${JSON.stringify(buffer.slice(0, 200))}`);
  };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    yield* flush(false);
  }
  buffer += decoder.decode();
  yield* flush(true);
}

export interface StreamResult {
  status: number;
  headers: Headers;
  /** Parsed JSON events, [DONE] excluded. */
  events: Record<string, any>[];
  /** Concatenated text deltas (completions: choices[0].text; chat: choices[0].delta.content). */
  text: string;
  /** Whether `data: [DONE]` arrived. */
  done: boolean;
  finishReason: string | null;
  /** Per delta event: ms since the request was sent. */
  times: number[];
}

export class Client {
  constructor(readonly base: string) {}

  async json(path: string, body?: unknown, init: { method?: string; headers?: Record<string, string>; raw?: string | Uint8Array } = {}) {
    const res = await fetch(this.base + path, {
      method: init.method ?? (body === undefined && init.raw === undefined ? 'GET' : 'POST'),
      headers: { 'content-type': 'application/json', ...init.headers },
      body: init.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const text = await res.text();
    let parsed: any = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  /** A streaming request; `onEvent` may return false to stop reading (the connection is then aborted). */
  async stream(
    path: string,
    body: Record<string, unknown>,
    options: { headers?: Record<string, string>; signal?: AbortSignal; onEvent?: (e: Record<string, any>, count: number) => boolean | void } = {},
  ): Promise<StreamResult> {
    const t0 = performance.now();
    const ctl = new AbortController();
    options.signal?.addEventListener('abort', () => ctl.abort(), { once: true });
    const res = await fetch(this.base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...options.headers },
      body: JSON.stringify({ ...body, stream: true }),
      signal: ctl.signal,
    });
    const out: StreamResult = { status: res.status, headers: res.headers, events: [], text: '', done: false, finishReason: null, times: [] };
    if (!res.ok || res.body === null) {
      out.events.push((await res.json()) as Record<string, any>);
      return out;
    }
    try {
      for await (const data of sseData(res.body as unknown as AsyncIterable<Uint8Array>)) {
        if (data === '[DONE]') {
          out.done = true;
          continue;
        }
        const e = JSON.parse(data);
        out.events.push(e);
        const choice = e.choices?.[0];
        const delta: string | undefined = choice?.text ?? choice?.delta?.content;
        if (delta) {
          out.text += delta;
          out.times.push(performance.now() - t0);
        }
        if (choice?.finish_reason) out.finishReason = choice.finish_reason;
        if (options.onEvent?.(e, out.events.length) === false) {
          ctl.abort();
          break;
        }
      }
    } catch (err) {
      if (!ctl.signal.aborted) throw err;
    }
    return out;
  }
}

export interface TestServer {
  url: string;
  client: Client;
  handler: ServeHandler;
  server: http.Server;
  close(): Promise<void>;
}

/** createHandler(options) on node:http, listening on 127.0.0.1 at a port the OS picks. */
export async function startServer(options: ServeOptions): Promise<TestServer> {
  const handler = createHandler(options);
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    client: new Client(url),
    handler,
    server,
    async close() {
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 10 ms until it holds (or throws after `timeoutMs`). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('waitFor: condition not reached in time');
    await sleep(10);
  }
}

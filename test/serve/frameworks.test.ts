/**
 * The exported handler mounted in Express and in Fastify (as lib/serve/README.md shows), answering a
 * real fetch on loopback: the same greedy completion as node:http, other routes left to the framework.
 */
import express from 'express';
import Fastify from 'fastify';
import type { AddressInfo } from 'net';

import { loadModel, type Model } from '../../lib/model';
import { createHandler, type ServeHandler } from '../../lib/serve';
import { stories260K } from '../model/fixtures';

const STORY = ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw';
const COMPLETION = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 32, temperature: 0 };

let model: Model;
beforeAll(async () => {
  model = await loadModel(stories260K(), { threads: 1 });
});
afterAll(async () => {
  await model?.dispose();
});

async function postJson(base: string, path: string, body: unknown) {
  const r = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as { choices?: { text: string }[] } };
}

test('Express: app.use(handler), with and without express.json() before it', async () => {
  for (const parseFirst of [false, true]) {
    const handler: ServeHandler = createHandler({ model });
    const app = express();
    if (parseFirst) app.use(express.json());
    app.get('/own-route', (_req, res) => {
      res.json({ mine: true });
    });
    app.use(handler);
    app.use((_req: express.Request, res: express.Response) => {
      res.status(404).json({ fallthrough: true });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const r = await postJson(base, '/v1/completions', COMPLETION);
      expect(r.status).toBe(200);
      expect(r.body.choices?.[0].text).toBe(STORY);
      expect(await (await fetch(`${base}/own-route`)).json()).toEqual({ mine: true });
      const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id)).toEqual(['stories260K']);
    } finally {
      await handler.close();
      await new Promise((resolve) => server.close(resolve));
    }
  }
});

test('Fastify: the raw request and reply handed over', async () => {
  const handler: ServeHandler = createHandler({ model });
  const app = Fastify();
  app.get('/own-route', async () => ({ mine: true }));
  app.all('/v1/*', (request, reply) => {
    reply.hijack();
    (request.raw as { body?: unknown }).body = request.body;
    handler(request.raw, reply.raw);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  try {
    const r = await postJson(base, '/v1/completions', COMPLETION);
    expect(r.status).toBe(200);
    expect(r.body.choices?.[0].text).toBe(STORY);
    expect(await (await fetch(`${base}/own-route`)).json()).toEqual({ mine: true });
    // A body Fastify parses but our handler refuses: the OpenAI-style error comes from us.
    const bad = await postJson(base, '/v1/completions', { ...COMPLETION, max_tokens: -1 });
    expect(bad.status).toBe(400);
    expect((bad.body as { error?: { param?: string } }).error?.param).toBe('max_tokens');
  } finally {
    await handler.close();
    await app.close();
  }
});

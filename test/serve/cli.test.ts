/**
 * `lm-infinite serve` through the built CLI (dist/cli.cjs, built by `npm run build:ts`): listens on
 * a free loopback port, answers, and exits cleanly on SIGTERM.
 */
import { spawn } from 'child_process';
import { existsSync } from 'fs';
import * as path from 'path';

import { stories260K } from '../model/fixtures';
import { Client } from './client';

const cli = path.resolve(__dirname, '../..', 'dist', 'cli.cjs');

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build:ts\` (npm test does) first`);
});

test('serve -m stories260K --port 0: completions over HTTP, then SIGTERM stops it (exit 0)', async () => {
  const child = spawn(process.execPath, [cli, 'serve', '-m', stories260K(), '--port', '0', '--threads', '1', '--max-sessions', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "serving" line in time:\n${stderr}`)), 60_000);
      child.stderr.on('data', () => {
        const m = /serving "stories260K" on (http:\/\/\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on('exit', () => reject(new Error(`serve exited early:\n${stderr}`)));
    });
    const client = new Client(url);
    const r = await client.json('/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    expect(r.body.choices[0].text).toBe(', there was a little girl');
    expect((await client.json('/health')).body.status).toBe('ok');
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  expect(stderr).toMatch(/SIGTERM: stopping/);
});

test('serve rejects bad flags with a usage error', async () => {
  const child = spawn(process.execPath, [cli, 'serve', '-m', stories260K(), '--max-kv-bytes', 'lots'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  expect(code).not.toBe(0);
  expect(stderr).toMatch(/max-kv-bytes/);
});

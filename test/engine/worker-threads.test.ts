/**
 * The package inside Node worker threads: a worker that loads a model, generates, and is then
 * terminated (with an eval in flight, or idle) must not take the process down. Each scenario runs
 * in a child process, so a crash shows as its exit status instead of killing jest.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

import { fixturePath } from '../helpers/fixtures';
import { STORIES } from '../gguf/helpers';

const distIndex = path.resolve(__dirname, '..', '..', 'dist', 'index.cjs');
/** PROVENANCE.md §1: the first greedy tokens after BOS + "Once upon a time" under llama.cpp. */
const GREEDY_PREFIX = ', there was a little girl';

/** A parent script: `rounds` workers, each generating 8 greedy tokens, then `after`, then terminated. */
function scenario(after: string, rounds: number): string {
  const worker = `
    const { loadModel } = require(${JSON.stringify(distIndex)});
    const { parentPort } = require('node:worker_threads');
    (async () => {
      const m = await loadModel(${JSON.stringify(fixturePath(STORIES))}, { threads: 1 });
      const s = m.createSession();
      await s.append('Once upon a time');
      let text = '';
      for await (const p of s.generate({ maxTokens: 8, temperature: 0 })) text += p.text;
      ${after}
      parentPort.postMessage(text);
    })();`;
  return `
    const { Worker } = require('node:worker_threads');
    (async () => {
      for (let i = 0; i < ${rounds}; i++) {
        const w = new Worker(${JSON.stringify(worker)}, { eval: true });
        const text = await new Promise((resolve, reject) => { w.on('message', resolve); w.on('error', reject); });
        await w.terminate();
        process.stdout.write(text + '\\n');
      }
    })();`;
}

function run(src: string) {
  return spawnSync(process.execPath, ['-e', src], { encoding: 'utf8', timeout: 120_000 });
}

beforeAll(() => {
  if (!existsSync(distIndex)) throw new Error(`${distIndex} is missing: run \`npm run build:ts\` (npm test does) first`);
});

test.each([
  ['idle sessions', ''],
  ['an eval in flight', "s.append(' and then they all went home to sleep, and the sun went down over the hill');"],
  ['a disposed session and a live one', "s.dispose(); m.createSession().append('The end');"],
])('a worker terminated with %s exits cleanly, every time', (_label, after) => {
  const r = run(scenario(after, 4));
  expect(r.stderr).toBe(''); // first: a crash's message says more than its signal
  expect(r.signal).toBeNull();
  expect(r.status).toBe(0);
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(4);
  for (const line of lines) expect(line.startsWith(GREEDY_PREFIX)).toBe(true);
});

test('a worker terminated while loadModel or attention() runs exits cleanly, every time', () => {
  const worker = `
    const { loadModel, attention } = require(${JSON.stringify(distIndex)});
    const { parentPort } = require('node:worker_threads');
    parentPort.postMessage('started');
    loadModel(${JSON.stringify(fixturePath(STORIES))}, { threads: 1 }).then(() => {});
    const q = new Float32Array(64 * 4 * 32), k = new Float32Array(4096 * 2 * 32), v = new Float32Array(4096 * 2 * 32);
    attention({ q, k, v, nHead: 4, nHeadKV: 2, headDim: 32, slotPositions: Float64Array.from({ length: 4096 }, (_, i) => i),
      queryPositions: Float64Array.from({ length: 64 }, (_, i) => 4032 + i), encoding: { kind: 'none' }, attention: 'vanilla' }).then(() => {});`;
  const src = `
    const { Worker } = require('node:worker_threads');
    (async () => {
      for (let i = 0; i < 8; i++) {
        const w = new Worker(${JSON.stringify(worker)}, { eval: true });
        await new Promise((resolve, reject) => { w.on('message', resolve); w.on('error', reject); });
        await new Promise((r) => setTimeout(r, i * 3)); // terminate at different points of the work
        await w.terminate();
      }
      process.stdout.write('done');
    })();`;
  const r = run(src);
  expect(r.stderr).toBe(''); // first: a crash's message says more than its signal
  expect(r.signal).toBeNull();
  expect(r.status).toBe(0);
  expect(r.stdout).toBe('done');
});

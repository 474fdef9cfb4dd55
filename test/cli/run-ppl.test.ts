/**
 * `lm-infinite run` and `ppl` through the built CLI (dist/cli.cjs, built by `npm test`) on the
 * stories260K fixture (PROVENANCE.md §1); ppl is checked against session.score in-process.
 */
import { spawn } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';

import { loadModel, type Model } from '../../lib/model';
import { cliPath, requireBuiltCli, runCli } from '../helpers/cli';
import { fixturesDir, stories260K } from '../model/fixtures';

/** PROVENANCE.md §1: llama.cpp's greedy 32 tokens after BOS + "Once upon a time". */
const GREEDY_TEXT = ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw';

let model: string;
let tmp: string;
let shortText: string;

beforeAll(() => {
  requireBuiltCli();
  model = stories260K(); // throws when the fixtures are absent
  tmp = mkdtempSync(path.join(os.tmpdir(), 'lmi-cli-'));
  // held-out stories, capped with --max-tokens: past the window, so the ring wraps
  shortText = path.join(fixturesDir(), 'text', 'tinystories_val.txt');
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('--help', () => {
  test.each([['run'], ['ppl']])('%s --help', (cmd) => {
    const r = runCli([cmd, '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`Usage: lm-infinite ${cmd}`);
    expect(r.stdout).toContain('Exit codes');
  });

  test('the top-level help lists run and ppl', () => {
    const r = runCli(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\s+run \[options\]/m);
    expect(r.stdout).toMatch(/^\s+ppl \[options\]/m);
  });
});

describe('lm-infinite run', () => {
  test('greedy on "Once upon a time" prints llama.cpp\'s continuation', () => {
    const r = runCli(['run', '-m', model, 'Once upon a time', '--temperature', '0', '--max-tokens', '32', '--threads', '1']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(GREEDY_TEXT);
  });

  test.each([[[] as string[]], [['-']]])('the prompt from stdin (args %j)', (extra) => {
    const r = runCli(['run', '-m', model, ...extra, '--temperature', '0', '--max-tokens', '32', '--threads', '1'], 'Once upon a time');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(GREEDY_TEXT);
  });

  test('--file, --echo, --stop and --verbose', () => {
    const prompt = path.join(tmp, 'prompt.txt');
    writeFileSync(prompt, 'Once upon a time');
    const r = runCli(['run', '-m', model, '-f', prompt, '--temperature', '0', '--max-tokens', '32', '--threads', '1', '--echo', '--stop', ' Lily', '-v']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('Once upon a time, there was a little girl named');
    expect(r.stderr).toMatch(/generated \d+ tokens in [\d.]+ s \([\d.]+ tokens\/s\); ended by stopString/);
  });

  test('vanilla attention gives the same greedy text inside the training window', () => {
    const r = runCli(['run', '-m', model, 'Once upon a time', '--attention', 'vanilla', '--temperature', '0', '--max-tokens', '32', '--threads', '1']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(GREEDY_TEXT);
  });

  test.each([
    [['--temperature', 'abc'], /--temperature/],
    [['--temperature', 'NaN'], /--temperature/],
    [['--top-p', '2'], /--top-p/],
    [['--max-tokens', '-3'], /--max-tokens/],
    [['--n-local', '0'], /--n-local/],
    [['--n-global', '1.5'], /--n-global/],
    [['--attention', 'banana'], /--attention/],
    [['--kv-type', 'q4'], /--kv-type/],
    [['--bogus'], /unknown option '--bogus'/],
    [['--attention', 'vanilla', '--n-local', '64'], /--n-local only applies to --attention lambda/],
    [['--top-k-from-layer', '2'], /needs --top-k-middle/],
    [['--top-k-middle', '5', '--max-tokens', 'inf'], /needs --max-archive/],
  ])('bad flags %j exit non-zero with a message on stderr', (flags, message) => {
    const r = runCli(['run', '-m', model, 'hi', ...flags]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stdout).toBe('');
  });

  test('a missing model file is an error, not a crash', () => {
    const r = runCli(['run', '-m', path.join(tmp, 'nope.gguf'), 'hi']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^lm-infinite: /);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  test('Ctrl-C during an unbounded run stops it promptly and cleanly', async () => {
    const child = spawn(process.execPath, [cliPath, 'run', '-m', model, 'Once upon a time', '--max-tokens', 'inf', '--seed', '7', '--threads', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.length > 200) resolve();
      });
      child.on('exit', () => reject(new Error(`run ended before it was interrupted: ${stderr}`)));
    });
    const sent = Date.now();
    child.kill('SIGINT');
    const r = await exited;
    expect(r.at - sent).toBeLessThan(5000);
    expect(r.code).toBe(130);
    expect(stdout.endsWith('\n')).toBe(true);
    expect(stderr).toBe('');
  });
});

describe('lm-infinite ppl', () => {
  let inProcess: Model;
  const maxTokens = 2300;
  const buckets = [0, 128, 512, 1024, 2048];

  beforeAll(async () => {
    inProcess = await loadModel(model, { threads: 1 });
  });

  afterAll(async () => {
    await inProcess?.dispose();
  });

  /** Per-bucket mean NLL of one session.score over the capped stream, in-process. */
  async function expected(options: Parameters<Model['createSession']>[0]): Promise<(number | null)[]> {
    const t = inProcess.tokenizer;
    const ids = t.encode(readFileSync(shortText, 'utf8'), { addSpecial: false });
    if (t.addBos && t.bos !== null) ids.unshift(t.bos);
    const s = inProcess.createSession(options);
    const r = await s.score(ids.slice(0, maxTokens));
    s.dispose();
    return buckets.map((start, k) => {
      const end = k + 1 < buckets.length ? buckets[k + 1] : maxTokens;
      let sum = 0;
      let n = 0;
      for (let i = 0; i < r.count; i++) {
        const p = r.startPosition + i;
        if (p >= start && p < end) {
          sum += r.nll[i];
          n++;
        }
      }
      return n ? sum / n : null;
    });
  }

  test('per-bucket NLL equals session.score in-process; --json has the documented shape; --plot writes an SVG', async () => {
    const plot = path.join(tmp, 'ppl.svg');
    const r = runCli([
      'ppl', '-m', model, shortText, '--max-tokens', String(maxTokens), '--buckets', buckets.join(','),
      '--n-local', '256', '--n-global', '4', '--threads', '1', '--json', '--plot', plot,
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ version: 1, model, text: shortText, tokens: maxTokens });
    expect(doc.buckets).toEqual(buckets.map((start, k) => ({ start, end: k + 1 < buckets.length ? buckets[k + 1] : maxTokens })));
    expect(doc.peakRssBytes).toBeGreaterThan(0);
    expect(doc.modes.map((m: { mode: string }) => m.mode)).toEqual(['lambda', 'vanilla']);
    for (const m of doc.modes) {
      expect(Object.keys(m).sort()).toEqual(
        ['attention', 'buckets', 'kvBytes', 'kvType', 'mode', 'nll', 'ppl', 'rssBytes', 'scored', 'seconds', 'tokens', 'tokensPerSecond'].sort(),
      );
      expect(m).toMatchObject({ tokens: maxTokens, scored: maxTokens - 1, kvType: 'f16' });
      expect(m.ppl).toBeCloseTo(Math.exp(m.nll), 10);
      for (const b of m.buckets) {
        expect(Object.keys(b).sort()).toEqual(['count', 'end', 'nll', 'ppl', 'start', 'sumNll']);
        expect(b.nll).toBeCloseTo(b.sumNll / b.count, 12);
      }
      expect(m.buckets.reduce((a: number, b: { count: number }) => a + b.count, 0)).toBe(maxTokens - 1);
    }
    expect(doc.modes[0].attention).toEqual({ nGlobal: 4, nLocal: 256, limitDistance: 256 });
    expect(doc.modes[1].attention).toBe('vanilla');

    const lambda = await expected({ attention: { nGlobal: 4, nLocal: 256 }, threads: 1 });
    const vanilla = await expected({ attention: 'vanilla', maxContext: maxTokens, threads: 1 });
    doc.modes[0].buckets.forEach((b: { nll: number }, k: number) => expect(Math.abs(b.nll - lambda[k]!)).toBeLessThan(1e-6));
    doc.modes[1].buckets.forEach((b: { nll: number }, k: number) => expect(Math.abs(b.nll - vanilla[k]!)).toBeLessThan(1e-6));
    // past the window Λ stays near its in-window NLL while vanilla degrades
    expect(doc.modes[0].buckets[4].nll).toBeLessThan(doc.modes[1].buckets[4].nll);

    const svg = readFileSync(plot, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('NLL (nats/token)');
    expect(svg).toContain('vanilla');
    expect((svg.match(/<path/g) ?? []).length).toBeGreaterThan(2);
  });

  test('the table, --modes and --vanilla-max', () => {
    const r = runCli(['ppl', '-m', model, shortText, '--max-tokens', '1500', '--modes', 'vanilla', '--vanilla-max', '1000', '--threads', '1']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^positions\s+tokens\s+vanilla nll\s+vanilla ppl$/m);
    expect(r.stdout).toMatch(/^0–512\s+511\s+\d\.\d{4}\s+\d+\.\d{3}$/m);
    expect(r.stdout).toMatch(/^1k–1500\s+0\s+-\s+-$/m); // past --vanilla-max: nothing scored
    expect(r.stdout).toMatch(/^vanilla: vanilla; 1000 tokens in/m);
  });

  test.each([
    [['--modes', 'lambda,foo'], /--modes/],
    [['--modes', ''], /--modes/],
    [['--buckets', '0,512,256'], /--buckets/],
    [['--buckets', '0,x'], /--buckets/],
    [['--vanilla-max', '-1'], /--vanilla-max/],
    [['--max-tokens', 'NaN'], /--max-tokens/],
  ])('bad flags %j exit non-zero with a message on stderr', (flags, message) => {
    const r = runCli(['ppl', '-m', model, shortText, ...flags]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  test('a missing text file is an error', () => {
    const r = runCli(['ppl', '-m', model, path.join(tmp, 'missing.txt')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^lm-infinite: .*missing\.txt/);
  });
});

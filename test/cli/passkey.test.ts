/**
 * `lm-infinite passkey` through the built CLI (dist/cli.cjs; `npm run build:ts` makes it) on
 * passkey-tiny: inside its 256-token window (NF = 0 and 1: 155- and 205-token prompts) every mode
 * retrieves every key, as llama.cpp does (fixtures/PROVENANCE.md §6); --json shape; --plot; errors.
 */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';

import { requireBuiltCli, runCli } from '../helpers/cli';
import { fixturePath } from '../helpers/fixtures';

const model = fixturePath('passkey/passkey-tiny.gguf');

let tmp: string;
beforeAll(() => {
  requireBuiltCli();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'lmi-passkey-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('lm-infinite passkey', () => {
  test('inside the training window (155 and 205 tokens) every mode gets 100%; --json shape; --plot', () => {
    const plot = path.join(tmp, 'heatmap.svg');
    const r = runCli([
      'passkey', model, '--lengths', '155,205', '--depths', '0,1.0', '--samples', '5', '--seed', '3',
      '--modes', 'vanilla,lambda,lambda-topk', '--top-k-from-layer', '0', '--threads', '1', '--json', '--plot', plot,
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.schema).toBe('lm-infinite/passkey@1');
    expect(doc.model).toMatchObject({ name: 'passkey-tiny', arch: 'llama', contextLength: 256, nLayer: 4 });
    expect(doc.settings).toMatchObject({ lengths: [155, 205], depths: [0, 1], samples: 5, seed: 3, maxNewTokens: 8, keyGenerator: 'sfc32' });
    expect(doc.modes.map((m: { mode: string }) => m.mode)).toEqual(['vanilla', 'lambda', 'lambda-topk']);
    for (const m of doc.modes) {
      expect(m.total).toBe(20);
      expect(m.correct).toBe(20);
      expect(m.accuracy).toBe(1);
      expect(m.byLength).toEqual([
        { length: 155, tokens: 155, correct: 10, total: 10, accuracy: 1 },
        { length: 205, tokens: 205, correct: 10, total: 10, accuracy: 1 },
      ]);
      expect(m.cells).toHaveLength(4);
      expect(m.cells[0]).toEqual({ length: 155, depth: 0, tokens: 155, correct: 5, total: 5, accuracy: 1 });
      expect(m.samples).toHaveLength(20);
      const s = m.samples[0];
      expect(Object.keys(s).sort()).toEqual(['answer', 'correct', 'depth', 'index', 'key', 'keyTokenIndex', 'length', 'parsed', 'tokens']);
      expect(s.parsed).toBe(String(s.key));
      expect(typeof m.seconds).toBe('number');
    }
    expect(doc.modes[0].attention).toBe('vanilla');
    expect(doc.modes[1].resolved).toEqual({ nGlobal: 10, nLocal: 256, limitDistance: 256 });
    expect(doc.modes[2].resolved).toMatchObject({ nGlobal: 10, nLocal: 256, limitDistance: 256, topK: { k: 5, fromLayer: 0, insertAt: 128 } });
    // the same keys for every mode
    expect(doc.modes[1].samples.map((s: { key: number }) => s.key)).toEqual(doc.modes[0].samples.map((s: { key: number }) => s.key));
    const svg = readFileSync(plot, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('lambda-topk');
  });

  test('the table form', () => {
    const r = runCli(['passkey', model, '--lengths', '205', '--depths', '2', '--samples', '2', '--modes', 'vanilla', '--threads', '1']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/vanilla \(causal attention over everything\): 100% \(4\/4/);
    expect(r.stdout).toMatch(/length\s+tokens\s+depth 0%\s+depth 100%\s+all/);
    expect(r.stdout).toMatch(/205\s+205\s+100%\s+100%\s+100%/);
  });

  test('--help lists the protocol options', () => {
    const r = runCli(['passkey', '--help']);
    expect(r.status).toBe(0);
    for (const flag of ['--modes', '--lengths', '--depths', '--samples', '--seed', '--n-local', '--n-global', '--top-k ', '--top-k-from-layer', '--top-k-insert-at', '--json', '--plot'])
      expect(r.stdout).toContain(flag);
  });

  test.each([
    [['--modes', 'vanilla,bogus'], /unknown "bogus"/],
    [['--lengths', 'abc'], /--lengths.*expected a token count/],
    [['--samples', '0'], /--samples.*expected an integer/],
    [['--depths', '0,2'], /--depths.*fractions in \[0, 1\]/],
    [['--top-k-from-layer', '9', '--modes', 'lambda-topk'], /topK\.fromLayer must be an integer in \[0, 3\]/],
    [['--lengths', '100'], /below the shortest prompt/],
    [['--plot', 'out.png', '--lengths', '155', '--samples', '1', '--depths', '1', '--modes', 'vanilla'], /must end in \.svg/],
  ])('bad options %j fail with a message', (args, message) => {
    const r = runCli(['passkey', model, ...args]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

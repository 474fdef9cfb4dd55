/**
 * `lm-infinite bench` through the built CLI (dist/cli.cjs) on stories260K with tiny positions: both
 * modes measured, memory reported (Λ's K/V fixed, vanilla's growing), vanilla past its max context
 * reported n/a; --help; bad options.
 */
import { requireBuiltCli, runCli } from '../helpers/cli';
import { fixturePath } from '../helpers/fixtures';

const model = fixturePath('stories260K/stories260K.gguf');

beforeAll(() => {
  requireBuiltCli();
});

const SMALL = ['--positions', '64,128,300', '--vanilla-max-context', '200', '--decode-tokens', '4', '--chunk-size', '64', '--threads', '1'];

describe('lm-infinite bench', () => {
  test('--json: Λ and vanilla at each position, with throughput and memory', () => {
    const r = runCli(['bench', model, ...SMALL, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.schema).toBe('lm-infinite/bench@1');
    expect(doc.model).toMatchObject({ name: 'stories260K', arch: 'llama', contextLength: 512 });
    expect(doc.settings).toMatchObject({ positions: [64, 128, 300], decodeTokens: 4, chunkSize: 64, vanillaMaxContext: 200, kvType: 'f16', threads: 1 });
    expect(doc.modes.map((m: { mode: string }) => m.mode)).toEqual(['lambda', 'vanilla']);
    const [lambda, vanilla] = doc.modes;
    expect(lambda.resolved).toEqual({ nGlobal: 10, nLocal: 512, limitDistance: 512 });
    for (const p of lambda.points) {
      expect(p.status).toBe('ok');
      expect(p.startPosition).toBeGreaterThanOrEqual(p.position);
      expect(p.decodeTokens).toBe(4);
      expect(p.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(p.rssBytes).toBeGreaterThan(1 << 20);
      expect(p.kvBytes).toBe(lambda.points[0].kvBytes); // fixed at creation
    }
    expect(lambda.points[0].prefillTokensPerSecond).toBeGreaterThan(0);
    expect(vanilla.points.map((p: { status: string }) => p.status)).toEqual(['ok', 'ok', 'skipped']);
    expect(vanilla.points[0].startPosition).toBe(64);
    expect(vanilla.points[1].kvBytes).toBeGreaterThan(vanilla.points[0].kvBytes); // sized per position
    expect(vanilla.points[2]).toMatchObject({ position: 300, decodeTokensPerSecond: null, kvBytes: null });
    expect(vanilla.points[2].reason).toMatch(/over the vanilla max context 200/);
  });

  test('the table reports n/a past the vanilla max context', () => {
    const r = runCli(['bench', model, ...SMALL]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/mode\s+position\s+decode tok\/s/);
    expect(r.stdout).toMatch(/lambda\s+300\s+\d+/);
    expect(r.stdout).toMatch(/vanilla\s+300\s+n\/a \[1\]/);
    expect(r.stdout).toMatch(/\[1\] vanilla at 300: skipped/);
  });

  test('--help lists the options', () => {
    const r = runCli(['bench', '--help']);
    expect(r.status).toBe(0);
    for (const flag of ['--positions', '--modes', '--decode-tokens', '--vanilla-max-context', '--n-local', '--kv-type', '--json', '--plot'])
      expect(r.stdout).toContain(flag);
  });

  test.each([
    [['--positions', '0'], /--positions.*positive whole token count/],
    [['--positions', '1x'], /--positions.*expected a token count/],
    [['--modes', 'fast'], /unknown "fast"/],
    [['--kv-type', 'f8'], /--kv-type.*Allowed choices are f16, f32/],
    [['--decode-tokens', '-1'], /--decode-tokens/],
  ])('bad options %j fail with a message', (args, message) => {
    const r = runCli(['bench', model, ...args]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });
});

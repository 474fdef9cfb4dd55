/**
 * `--gpu <on|off|auto>` on every command that loads a model. Without a usable GPU (a CPU-only
 * build, or no device): `on` fails with the reason and the fix, `auto` runs on the CPU with one
 * LMI_GPU_FALLBACK warning on stderr; a bad value is a usage error.
 */
import { loadAddon } from '../../lib/native/addon';
import { fixturePath, STORIES } from '../gguf/helpers';
import { requireBuiltCli, runCli } from '../helpers/cli';

describe('--gpu', () => {
  let usable = false;
  let model: string;
  beforeAll(async () => {
    requireBuiltCli();
    model = fixturePath(STORIES);
    usable = (await loadAddon()).systemInfo().gpu?.unavailableReason === null;
  });

  test.each(['run', 'ppl', 'passkey', 'bench', 'serve'])('%s --help lists --gpu', (cmd) => {
    const r = runCli([cmd, '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--gpu <mode>[\s\S]*"on",\s+"off",\s+"auto"/);
  });

  test('a value other than on, off, auto is a usage error', () => {
    const r = runCli(['run', '-m', model, '--gpu', 'maybe', 'hi']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/'maybe' is invalid\. Allowed choices are on, off, auto/);
  });

  test('on: the GPU, or the reason there is none and the fix', () => {
    const r = runCli(['run', '-m', model, '--gpu', 'on', 'Once upon a time', '--temperature', '0', '--max-tokens', '4', '--threads', '1']);
    if (usable) {
      expect(r.status).toBe(0);
      return;
    }
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/UNSUPPORTED.*gpu: /);
    expect(r.stderr).toMatch(/LMI_CUDA=1|no CUDA device is visible/);
  });

  test('auto: runs, on the CPU with one fallback warning when there is no GPU', () => {
    const r = runCli(['run', '-m', model, '--gpu', 'auto', 'Once upon a time', '--temperature', '0', '--max-tokens', '4', '--threads', '1', '-v']);
    expect(r.status).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(0);
    expect(r.stderr).toContain(usable ? 'threads; gpu' : 'threads; cpu');
    expect((r.stderr.match(/\[LMI_GPU_FALLBACK\]/g) ?? []).length).toBe(usable ? 0 : 1);
  });
});

/** `lm-infinite inspect` and `info` through the built CLI (dist/cli.cjs, built by `npm test`). */
import { requireBuiltCli, runCli } from '../helpers/cli';
import { fixturePath } from '../helpers/fixtures';

beforeAll(() => {
  requireBuiltCli();
});

describe('lm-infinite inspect', () => {
  const model = () => fixturePath('stories260K/stories260K.gguf');

  test('prints the header, metadata and tensor table', () => {
    const r = runCli(['inspect', model()]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^GGUF v3, 1,185,568 bytes/);
    expect(r.stdout).toMatch(/llama\.context_length\s+u32\s+512/);
    expect(r.stdout).toMatch(/\[512 strings: "<unk>", "<s>", "<\/s>", \.\.\. \]/);
    expect(r.stdout).toMatch(/Tensors \(48\)/);
    expect(r.stdout).toMatch(/token_embd\.weight\s+F32/);
  });

  test('--json is parseable and complete', () => {
    const r = runCli(['inspect', '--json', model()]);
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.version).toBe(3);
    expect(doc.tensors).toHaveLength(48);
    expect(doc.metadata['general.architecture'].value).toBe('llama');
    expect(doc.metadata['llama.block_count'].value).toBe(5);
  });

  test('a GGUF v1 file is refused with a typed error on stderr and exit code 1', () => {
    const r = runCli(['inspect', fixturePath('stories260K/tinyllamas-stories-260k-f32.gguf')]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/UnsupportedError \[UNSUPPORTED\]: GGUF version 1/);
  });

  test('a missing file and a missing argument fail cleanly', () => {
    const missing = runCli(['inspect', `${fixturePath('stories260K/stories260K.gguf')}.missing`]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/INVALID_ARGUMENT/);
    expect(missing.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const none = runCli(['inspect']);
    expect(none.status).not.toBe(0);
    expect(none.stderr).toMatch(/missing required argument/);
  });
});

describe('lm-infinite info', () => {
  test('reports ggml and the kernel path as JSON', () => {
    const r = runCli(['info', '--json']);
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.ggmlVersion).toMatch(/^\d+\.\d+\.\d+$/);
    expect(['avx2+fma', 'portable']).toContain(info.attentionSimd);
  });
});

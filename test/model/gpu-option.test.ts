/**
 * loadModel's `gpu` option: true needs a CUDA build and a device (else UNSUPPORTED naming what is
 * missing and the fix), 'auto' falls back to the CPU with one process warning, false is the CPU,
 * anything else is INVALID_ARGUMENT before any file is read. On a machine with a CUDA build and a
 * GPU the same tests check that the model reports 'gpu' and computes.
 */
import { InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import { GPU_FALLBACK_WARNING, loadModel } from '../../lib/model';
import { resetGpuFallbackWarning } from '../../lib/model/load';
import { loadAddon } from '../../lib/native/addon';
import type { NativeGpuInfo } from '../../lib/native/types';
import { fixturePath, STORIES } from '../gguf/helpers';

describe("loadModel({ gpu })", () => {
  let gpu: NativeGpuInfo;
  let usable: boolean;
  // emitWarning is watched by a spy: jest's sandboxed `process` does not relay 'warning' events.
  let emitWarning: jest.SpyInstance;
  const fallbackWarnings = (): string[] =>
    emitWarning.mock.calls
      .filter((call: unknown[]) => (call[1] as { code?: string } | undefined)?.code === GPU_FALLBACK_WARNING)
      .map((call: unknown[]) => String(call[0]));

  beforeAll(async () => {
    const info = (await loadAddon()).systemInfo();
    expect(info.gpu).toBeDefined();
    gpu = info.gpu!;
    usable = gpu.unavailableReason === null;
  });
  beforeEach(() => {
    resetGpuFallbackWarning();
    emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
  });
  afterEach(() => {
    emitWarning.mockRestore();
  });

  test('systemInfo().gpu describes the build and the devices', () => {
    expect(typeof gpu.compiled).toBe('boolean');
    expect(Number.isInteger(gpu.deviceCount)).toBe(true);
    if (!gpu.compiled) {
      expect(gpu.deviceCount).toBe(0);
      expect(gpu.unavailableReason).toMatch(/LMI_CUDA=1/);
    }
    if (usable) expect(gpu.deviceCount).toBeGreaterThan(0);
  });

  test('false (the default) runs on the CPU', async () => {
    const model = await loadModel(fixturePath(STORIES), { threads: 1 });
    expect(model.device).toBe('cpu');
    expect(model.info.device).toBe('cpu');
    await model.dispose();
    const explicit = await loadModel(fixturePath(STORIES), { threads: 1, gpu: false });
    expect(explicit.device).toBe('cpu');
    await explicit.dispose();
  });

  test('true without a usable GPU rejects with UNSUPPORTED, saying what is missing and how to fix it', async () => {
    if (usable) {
      const model = await loadModel(fixturePath(STORIES), { threads: 1, gpu: true });
      expect(model.device).toBe('gpu');
      const s = model.createSession();
      const { count } = await s.score('Once upon a time there was a little girl.');
      expect(count).toBeGreaterThan(0);
      await model.dispose();
      return;
    }
    const err = await loadModel(fixturePath(STORIES), { threads: 1, gpu: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as UnsupportedError).code).toBe('UNSUPPORTED');
    if (!gpu.compiled) expect((err as Error).message).toMatch(/no CUDA support.*LMI_CUDA=1/s);
    else expect((err as Error).message).toMatch(/no CUDA device is visible/);
  });

  test("'auto' uses the GPU when there is one, else the CPU with one LMI_GPU_FALLBACK warning", async () => {
    const a = await loadModel(fixturePath(STORIES), { threads: 1, gpu: 'auto' });
    const b = await loadModel(fixturePath(STORIES), { threads: 1, gpu: 'auto' });
    expect(a.device).toBe(usable ? 'gpu' : 'cpu');
    expect(b.device).toBe(a.device);
    const warnings = fallbackWarnings();
    if (usable) {
      expect(warnings).toHaveLength(0);
    } else {
      expect(warnings).toHaveLength(1); // once per process, not per model
      expect(warnings[0]).toMatch(/gpu: 'auto' found no usable GPU.*CPU/s);
      expect(warnings[0]).toContain(gpu.compiled ? 'no CUDA device' : 'LMI_CUDA=1');
    }
    // and the model works
    const { count } = await a.createSession().score('The cat sat on the mat.');
    expect(count).toBeGreaterThan(0);
    await a.dispose();
    await b.dispose();
  });

  test.each([['yes'], [1], [null], ['GPU'], [{}]])('gpu: %p is INVALID_ARGUMENT', async (value) => {
    const err = await loadModel(fixturePath(STORIES), { gpu: value as never }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe('INVALID_ARGUMENT');
    expect((err as Error).message).toMatch(/gpu must be true, false or 'auto'/);
  });

  test("the native spec's device is checked too", async () => {
    const addon = await loadAddon();
    const spec = { path: 'x.gguf', arch: 'llama', hparams: {}, tensors: [], threads: 1, device: 'tpu' };
    await expect(addon.loadModel(spec as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

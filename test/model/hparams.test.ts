/** Architecture and hyperparameters from GGUF metadata; loadModel's checks before native code runs. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { GgufFormatError, InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import { GgmlType, ggufValue, writeGguf, type GgufMetadata, type GgufTensorInfo } from '../../lib/gguf';
import { describeModelFile, loadModel, readArchitecture, readHyperparameters } from '../../lib/model';
import { fixturesDir } from './fixtures';

function meta(entries: Record<string, ReturnType<typeof ggufValue.u32>>): GgufMetadata {
  return new Map(Object.entries(entries));
}

function embd(nEmbd: number, nVocab: number): GgufTensorInfo {
  return { name: 'token_embd.weight', dims: [nEmbd, nVocab], type: GgmlType.F32, relativeOffset: 0, offset: 64, byteLength: nEmbd * nVocab * 4 };
}

const base = (arch: string, extra: Record<string, ReturnType<typeof ggufValue.u32>> = {}) =>
  meta({
    'general.architecture': ggufValue.string(arch),
    [`${arch}.context_length`]: ggufValue.u32(512),
    [`${arch}.embedding_length`]: ggufValue.u32(64),
    [`${arch}.block_count`]: ggufValue.u32(5),
    [`${arch}.feed_forward_length`]: ggufValue.u32(172),
    [`${arch}.attention.head_count`]: ggufValue.u32(8),
    ...extra,
  });

const hp = (m: GgufMetadata, nVocab = 100) => readHyperparameters({ metadata: m, tensors: [embd(64, nVocab)] }, readArchitecture(m));

describe('readArchitecture', () => {
  test('the four supported ones; others are UnsupportedError naming them', () => {
    for (const a of ['llama', 'qwen2', 'gptneox', 'mpt']) expect(readArchitecture(base(a))).toBe(a);
    expect(() => readArchitecture(base('falcon'))).toThrow(UnsupportedError);
    expect(() => readArchitecture(base('falcon'))).toThrow(/"falcon"/);
    expect(() => readArchitecture(new Map())).toThrow(/general\.architecture/);
  });
});

describe('readHyperparameters', () => {
  test('llama: defaults for head_count_kv, rope dims and base; normal pairing', () => {
    const h = hp(base('llama', { 'llama.attention.layer_norm_rms_epsilon': ggufValue.f32(1e-5) }));
    expect(h).toMatchObject({
      nVocab: 100, nEmbd: 64, nLayer: 5, nHead: 8, nHeadKV: 8, headDim: 8, nFF: 172, contextLength: 512,
      ropeTheta: 10000, ropeFreqScale: 1, rotaryDim: 8, ropePairing: 'normal', parallelResidual: false, alibiBiasMax: 0, clampKQV: 0,
    });
    expect(h.normEps).toBeCloseTo(1e-5, 10);
  });

  test('qwen2: neox pairing, GQA, rope base', () => {
    const h = hp(base('qwen2', {
      'qwen2.attention.layer_norm_rms_epsilon': ggufValue.f32(1e-6),
      'qwen2.attention.head_count_kv': ggufValue.u32(2),
      'qwen2.rope.freq_base': ggufValue.f32(1e6),
    }));
    expect(h).toMatchObject({ nHeadKV: 2, ropePairing: 'neox', ropeTheta: 1e6 });
  });

  test('gptneox: partial rotary, LayerNorm eps, parallel residual (default true)', () => {
    const m = base('gptneox', { 'gptneox.attention.layer_norm_epsilon': ggufValue.f32(1e-5), 'gptneox.rope.dimension_count': ggufValue.u32(2) });
    expect(hp(m)).toMatchObject({ rotaryDim: 2, ropePairing: 'neox', parallelResidual: true });
    m.set('gptneox.use_parallel_residual', ggufValue.bool(false));
    expect(hp(m).parallelResidual).toBe(false);
  });

  test('mpt: ALiBi bias max and clamp, no rotary', () => {
    const h = hp(base('mpt', {
      'mpt.attention.layer_norm_epsilon': ggufValue.f32(1e-5),
      'mpt.attention.max_alibi_bias': ggufValue.f32(8),
      'mpt.attention.clamp_kqv': ggufValue.f32(6),
    }));
    expect(h).toMatchObject({ alibiBiasMax: 8, clampKQV: 6, rotaryDim: 0 });
    expect(() => hp(base('mpt', { 'mpt.attention.layer_norm_epsilon': ggufValue.f32(1e-5) }))).toThrow(/mpt\.attention\.max_alibi_bias/);
  });

  test('linear rope scaling: freqScale = 1 / factor; other kinds are unsupported', () => {
    const eps = { 'llama.attention.layer_norm_rms_epsilon': ggufValue.f32(1e-5) };
    expect(hp(base('llama', { ...eps, 'llama.rope.scaling.type': ggufValue.string('linear'), 'llama.rope.scaling.factor': ggufValue.f32(4) })).ropeFreqScale).toBe(0.25);
    expect(hp(base('llama', { ...eps, 'llama.rope.scale_linear': ggufValue.f32(2) })).ropeFreqScale).toBe(0.5);
    expect(hp(base('llama', { ...eps, 'llama.rope.scaling.type': ggufValue.string('none'), 'llama.rope.scaling.factor': ggufValue.f32(4) })).ropeFreqScale).toBe(1);
    expect(() => hp(base('llama', { ...eps, 'llama.rope.scaling.type': ggufValue.string('yarn'), 'llama.rope.scaling.factor': ggufValue.f32(4) }))).toThrow(UnsupportedError);
    expect(() => hp(base('llama', { ...eps, 'llama.rope.scaling.type': ggufValue.string('yarn') }))).toThrow(/llama\.rope\.scaling\.type/);
  });

  test.each([
    ['llama.attention.layer_norm_rms_epsilon', {}, /llama\.attention\.layer_norm_rms_epsilon/],
    ['head_count_kv not dividing', { 'llama.attention.head_count_kv': ggufValue.u32(3) }, /head_count_kv/],
    ['zero block count', { 'llama.block_count': ggufValue.u32(0) }, /llama\.block_count/],
    ['negative eps', { 'llama.attention.layer_norm_rms_epsilon': ggufValue.f32(-1) }, /layer_norm_rms_epsilon/],
    ['odd rope dims', { 'llama.rope.dimension_count': ggufValue.u32(3) }, /llama\.rope\.dimension_count/],
    ['string context length', { 'llama.context_length': ggufValue.string('512') }, /llama\.context_length/],
    ['vocab_size mismatch', { 'llama.vocab_size': ggufValue.u32(99) }, /llama\.vocab_size/],
  ])('%s → GgufFormatError naming the key', (_name, extra, message) => {
    const m = base('llama', { 'llama.attention.layer_norm_rms_epsilon': ggufValue.f32(1e-5), ...extra });
    if (_name === 'llama.attention.layer_norm_rms_epsilon') m.delete(_name);
    expect(() => hp(m)).toThrow(GgufFormatError);
    expect(() => hp(m)).toThrow(message);
  });

  test('the token embedding gives the vocabulary size and must match embedding_length', () => {
    const m = base('llama', { 'llama.attention.layer_norm_rms_epsilon': ggufValue.f32(1e-5) });
    expect(() => readHyperparameters({ metadata: m, tensors: [] }, 'llama')).toThrow(/token_embd\.weight/);
    expect(() => readHyperparameters({ metadata: m, tensors: [embd(32, 100)] }, 'llama')).toThrow(/token_embd\.weight/);
  });
});

describe('loadModel checks (no native code)', () => {
  test('the stories260K fixture describes as PROVENANCE §1 says', async () => {
    const file = path.join(fixturesDir(), 'stories260K', 'stories260K.gguf');
    const { spec, tokenizer, name } = await describeModelFile(file, 2);
    expect(name).toBe('stories260K');
    expect(spec.arch).toBe('llama');
    expect(spec.hparams).toMatchObject({
      nVocab: 512, nEmbd: 64, nLayer: 5, nHead: 8, nHeadKV: 4, headDim: 8, nFF: 172, contextLength: 512,
      ropeTheta: 10000, rotaryDim: 8, ropePairing: 'normal',
    });
    expect(spec.tensors.length).toBe(48);
    expect(spec.tensors.find((t) => t.name === 'output.weight')).toMatchObject({ dims: [64, 512], type: 0, byteLength: 64 * 512 * 4 });
    expect(path.isAbsolute(spec.path)).toBe(true);
    expect(spec.threads).toBe(2);
    expect(tokenizer.vocabSize).toBe(512);
  });

  test('bad arguments and files fail with typed errors before the addon is needed', async () => {
    await expect(loadModel('')).rejects.toThrow(InvalidArgumentError);
    await expect(loadModel('/nonexistent/model.gguf')).rejects.toThrow(InvalidArgumentError);
    await expect(loadModel('x.gguf', { threads: 0 })).rejects.toThrow(/threads/);
    await expect(loadModel('x.gguf', { thread: 2 } as never)).rejects.toThrow(/unknown option thread/);
    await expect(loadModel('x.gguf', { signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lmi-model-'));
    try {
      const file = path.join(dir, 'falcon.gguf');
      await writeGguf(file, { metadata: base('falcon') });
      await expect(loadModel(file)).rejects.toThrow(UnsupportedError);
      await expect(loadModel(file)).rejects.toThrow(/"falcon"/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * From a GGUF file's metadata and tensor table to the architecture and hyperparameters native
 * builds the forward pass from. Every problem is a typed error naming the key or tensor.
 */
import { GgufFormatError, UnsupportedError } from '../errors';
import { getBool, getInteger, getNumber, getString, requireString } from '../gguf/metadata';
import type { GgufFile, GgufMetadata, GgufTensorInfo } from '../gguf/types';
import type { NativeArchitecture, NativeHyperparameters, NativeTensorSpec } from '../native/types';

export const SUPPORTED_ARCHITECTURES: readonly NativeArchitecture[] = ['llama', 'qwen2', 'gptneox', 'mpt'];

/** RoPE pair layout each RoPE architecture uses (llama.cpp's rope type). */
const ROPE_PAIRING: Record<Exclude<NativeArchitecture, 'mpt'>, 'normal' | 'neox'> = {
  llama: 'normal',
  qwen2: 'neox',
  gptneox: 'neox',
};

function isSupported(arch: string): arch is NativeArchitecture {
  return (SUPPORTED_ARCHITECTURES as readonly string[]).includes(arch);
}

/** `general.architecture`, checked against the architectures this package runs. */
export function readArchitecture(meta: GgufMetadata): NativeArchitecture {
  const arch = requireString(meta, 'general.architecture');
  if (!isSupported(arch))
    throw new UnsupportedError(
      `architecture "${arch}" (general.architecture) is not supported; lm-infinite runs ${SUPPORTED_ARCHITECTURES.join(', ')}`,
    );
  return arch;
}

function positiveInt(meta: GgufMetadata, key: string, fallback?: number): number {
  const v = getInteger(meta, key) ?? fallback;
  if (v === undefined) throw new GgufFormatError(`required metadata key "${key}" is missing`);
  if (v < 1 || v > 2 ** 31 - 1) throw new GgufFormatError(`metadata key "${key}" must be a positive integer, got ${v}`);
  return v;
}

function positiveNumber(meta: GgufMetadata, key: string, fallback?: number): number {
  const v = getNumber(meta, key) ?? fallback;
  if (v === undefined) throw new GgufFormatError(`required metadata key "${key}" is missing`);
  if (!Number.isFinite(v) || v <= 0) throw new GgufFormatError(`metadata key "${key}" must be a finite number > 0, got ${v}`);
  return v;
}

/** Position multiplier from the rope scaling keys: linear scaling by `factor` is freqScale = 1 / factor. */
function readFreqScale(meta: GgufMetadata, arch: string): number {
  const typeKey = `${arch}.rope.scaling.type`;
  const factorKey = `${arch}.rope.scaling.factor`;
  const legacyKey = `${arch}.rope.scale_linear`;
  const type = getString(meta, typeKey);
  const factor = getNumber(meta, factorKey) ?? getNumber(meta, legacyKey);
  const factorName = getNumber(meta, factorKey) !== undefined ? factorKey : legacyKey;
  if (type !== undefined && type !== 'none' && type !== 'linear')
    throw new UnsupportedError(`rope scaling "${type}" (${typeKey}) is not supported; only linear scaling is`);
  if (type === 'none' || factor === undefined || factor === 0) return 1;
  if (!Number.isFinite(factor) || factor < 0) throw new GgufFormatError(`metadata key "${factorName}" must be a finite number > 0, got ${factor}`);
  return 1 / factor;
}

function findTensor(tensors: readonly GgufTensorInfo[], name: string): GgufTensorInfo | undefined {
  return tensors.find((t) => t.name === name);
}

/** Hyperparameters of a supported architecture, from `<arch>.*` keys and the token embedding's shape. */
export function readHyperparameters(file: Pick<GgufFile, 'metadata' | 'tensors'>, arch: NativeArchitecture): NativeHyperparameters {
  const meta = file.metadata;
  const k = (name: string) => `${arch}.${name}`;
  const contextLength = positiveInt(meta, k('context_length'));
  const nEmbd = positiveInt(meta, k('embedding_length'));
  const nLayer = positiveInt(meta, k('block_count'));
  const nFF = positiveInt(meta, k('feed_forward_length'));
  const nHead = positiveInt(meta, k('attention.head_count'));
  const nHeadKV = positiveInt(meta, k('attention.head_count_kv'), nHead);
  if (nHead % nHeadKV !== 0)
    throw new GgufFormatError(`${k('attention.head_count')} (${nHead}) must be a multiple of ${k('attention.head_count_kv')} (${nHeadKV})`);
  if (nEmbd % nHead !== 0 && getInteger(meta, k('attention.key_length')) === undefined)
    throw new GgufFormatError(`${k('embedding_length')} (${nEmbd}) is not a multiple of ${k('attention.head_count')} (${nHead})`);
  const headDim = positiveInt(meta, k('attention.key_length'), nEmbd / nHead);
  const valueLength = getInteger(meta, k('attention.value_length'));
  if (valueLength !== undefined && valueLength !== headDim)
    throw new UnsupportedError(`${k('attention.value_length')} (${valueLength}) differs from the key length (${headDim}); not supported`);

  const embd = findTensor(file.tensors, 'token_embd.weight');
  if (embd === undefined) throw new GgufFormatError('tensor "token_embd.weight" is missing');
  if (embd.dims.length !== 2 || embd.dims[0] !== nEmbd)
    throw new GgufFormatError(`tensor "token_embd.weight" has shape [${embd.dims.join(', ')}], expected [${nEmbd} (${k('embedding_length')}), n_vocab]`);
  const nVocab = embd.dims[1];
  const declaredVocab = getInteger(meta, k('vocab_size'));
  if (declaredVocab !== undefined && declaredVocab !== nVocab)
    throw new GgufFormatError(`${k('vocab_size')} is ${declaredVocab} but tensor "token_embd.weight" has ${nVocab} rows`);

  let normEps: number;
  let rotaryDim = 0;
  let ropeTheta = 10000;
  let ropeFreqScale = 1;
  let ropePairing: 'normal' | 'neox' = 'normal';
  let parallelResidual = false;
  let alibiBiasMax = 0;
  let clampKQV = 0;
  if (arch === 'mpt') {
    normEps = positiveNumber(meta, k('attention.layer_norm_epsilon'));
    alibiBiasMax = positiveNumber(meta, k('attention.max_alibi_bias'));
    clampKQV = getNumber(meta, k('attention.clamp_kqv')) ?? 0;
    if (!Number.isFinite(clampKQV) || clampKQV < 0)
      throw new GgufFormatError(`metadata key "${k('attention.clamp_kqv')}" must be a finite number >= 0, got ${clampKQV}`);
  } else {
    normEps = arch === 'gptneox'
      ? positiveNumber(meta, k('attention.layer_norm_epsilon'))
      : positiveNumber(meta, k('attention.layer_norm_rms_epsilon'));
    rotaryDim = positiveInt(meta, k('rope.dimension_count'), headDim);
    if (rotaryDim % 2 !== 0 || rotaryDim > headDim)
      throw new GgufFormatError(`${k('rope.dimension_count')} (${rotaryDim}) must be even and at most the head size (${headDim})`);
    ropeTheta = positiveNumber(meta, k('rope.freq_base'), 10000);
    ropeFreqScale = readFreqScale(meta, arch);
    ropePairing = ROPE_PAIRING[arch];
    if (arch === 'gptneox') parallelResidual = getBool(meta, k('use_parallel_residual')) ?? true;
  }

  return {
    nVocab,
    nEmbd,
    nLayer,
    nHead,
    nHeadKV,
    headDim,
    nFF,
    normEps,
    contextLength,
    ropeTheta,
    ropeFreqScale,
    rotaryDim,
    ropePairing,
    parallelResidual,
    alibiBiasMax,
    clampKQV,
  };
}

/** The tensor table as native wants it; checks that every tensor's data lies inside the file. */
export function tensorSpecs(file: Pick<GgufFile, 'tensors' | 'fileSize'>): NativeTensorSpec[] {
  return file.tensors.map((t) => {
    if (t.offset + t.byteLength > file.fileSize)
      throw new GgufFormatError(`tensor "${t.name}" runs to byte ${t.offset + t.byteLength}, past the end of the file (${file.fileSize} bytes)`);
    return { name: t.name, type: t.type, dims: [...t.dims], offset: t.offset, byteLength: t.byteLength };
  });
}

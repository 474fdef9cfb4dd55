import * as os from 'os';
import * as path from 'path';

import { AbortError, GgufFormatError, InvalidArgumentError, NativeBuildError, UnsupportedError } from '../errors';
import { getString } from '../gguf/metadata';
import { readGguf } from '../gguf/reader';
import { callNative, loadAddon } from '../native/addon';
import type { NativeAddon, NativeDevice, NativeModelSpec } from '../native/types';
import { Tokenizer } from '../tokenizer';
import { readArchitecture, readHyperparameters, tensorSpecs } from './hparams';
import { Model } from './model';

export interface LoadModelOptions {
  /** Compute threads for the model's sessions. Default: an estimate of the physical cores. */
  threads?: number;
  /** Aborts the load (before or after the native part) with AbortError. */
  signal?: AbortSignal;
  /**
   * Where the model runs. `true`: weights, K/V and compute on the GPU (ggml's CUDA backend and the
   * CUDA Λ kernel); needs an addon built with `LMI_CUDA=1` and a visible CUDA device, else the load
   * rejects with UnsupportedError saying which is missing. `'auto'`: the GPU when there is one, else
   * the CPU with a one-time process warning (code `LMI_GPU_FALLBACK`). Default `false` (CPU).
   */
  gpu?: GpuOption;
}

export type GpuOption = boolean | 'auto';

/** Process warning code of `gpu: 'auto'` falling back to the CPU (emitted once per process). */
export const GPU_FALLBACK_WARNING = 'LMI_GPU_FALLBACK';
let gpuFallbackWarned = false;

function warnGpuFallback(reason: string): void {
  if (gpuFallbackWarned) return;
  gpuFallbackWarned = true;
  process.emitWarning(`lm-infinite: gpu: 'auto' found no usable GPU, so models run on the CPU. ${reason}`, {
    code: GPU_FALLBACK_WARNING,
  });
}

/** @internal For tests: lets the next fallback warn again. */
export function resetGpuFallbackWarning(): void {
  gpuFallbackWarned = false;
}

/** Why the addon cannot run a model on the GPU (null: it can). */
function gpuUnavailableReason(addon: NativeAddon): string | null {
  const info = typeof addon.systemInfo === 'function' ? addon.systemInfo().gpu : undefined;
  if (info === undefined) return 'The native addon predates GPU support; rebuild it (`LMI_CUDA=1 npm rebuild lm-infinite`).';
  if (info.unavailableReason !== null) return info.unavailableReason.replace(/^./, (c) => c.toUpperCase()) + '.';
  return info.deviceCount > 0 ? null : 'No CUDA device is visible.';
}

/**
 * An estimate of the physical cores: half the logical CPUs when there are at least 4 (assuming
 * two hardware threads per core), all of them otherwise.
 */
export function defaultThreadCount(): number {
  const logical = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, logical >= 4 ? Math.floor(logical / 2) : logical);
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new AbortError('loadModel was aborted');
}

/** What loadModel hands native for a parsed file; exported for tests and tools. */
export async function describeModelFile(file: string, threads: number): Promise<{ spec: NativeModelSpec; tokenizer: Tokenizer; name: string | null }> {
  const gguf = await readGguf(file);
  const arch = readArchitecture(gguf.metadata);
  const hparams = readHyperparameters(gguf, arch);
  const tokenizer = Tokenizer.fromGgufMetadata(gguf.metadata);
  if (tokenizer.vocabSize > hparams.nVocab)
    throw new GgufFormatError(
      `the tokenizer has ${tokenizer.vocabSize} tokens (tokenizer.ggml.tokens) but tensor "token_embd.weight" only ${hparams.nVocab} rows`,
    );
  const name = getString(gguf.metadata, 'general.name') ?? null;
  return { spec: { path: path.resolve(file), arch, hparams, tensors: tensorSpecs(gguf), threads }, tokenizer, name };
}

/**
 * Loads a GGUF model: reads its metadata, picks the architecture (llama, qwen2, gptneox, mpt),
 * builds the tokenizer and maps the weights (native, off the event loop).
 */
export async function loadModel(file: string, options: LoadModelOptions = {}): Promise<Model> {
  if (typeof file !== 'string' || file.length === 0) throw new InvalidArgumentError('loadModel expects the path of a GGUF file');
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('loadModel options must be an object');
  for (const key of Object.keys(options))
    if (key !== 'threads' && key !== 'signal' && key !== 'gpu')
      throw new InvalidArgumentError(`unknown option ${key} (known: threads, signal, gpu)`);
  const gpu = options.gpu === undefined ? false : options.gpu;
  if (gpu !== true && gpu !== false && gpu !== 'auto')
    throw new InvalidArgumentError(`gpu must be true, false or 'auto', got ${JSON.stringify(options.gpu) ?? String(options.gpu)}`);
  const threads = options.threads ?? defaultThreadCount();
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024)
    throw new InvalidArgumentError(`threads must be an integer in [1, 1024], got ${String(options.threads)}`);
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidArgumentError('signal must be an AbortSignal');

  checkAbort(signal);
  const { spec, tokenizer, name } = await describeModelFile(file, threads);
  checkAbort(signal);
  const addon = await loadAddon();
  if (typeof addon.loadModel !== 'function')
    throw new NativeBuildError('the native addon has no model engine (loadModel); rebuild it with `npx lm-infinite-build`');
  checkAbort(signal);
  let device: NativeDevice = gpu === true ? 'gpu' : 'cpu';
  if (gpu === 'auto') {
    const reason = gpuUnavailableReason(addon);
    if (reason === null) device = 'gpu';
    else warnGpuFallback(reason);
  }
  let native;
  try {
    native = await callNative(() => addon.loadModel({ ...spec, device }));
  } catch (err) {
    // 'auto': a GPU that cannot take this model (an unsupported tensor type on the device, ...) -> CPU.
    if (gpu !== 'auto' || device !== 'gpu' || !(err instanceof UnsupportedError)) throw err;
    warnGpuFallback(err.message);
    device = 'cpu';
    checkAbort(signal);
    native = await callNative(() => addon.loadModel({ ...spec, device }));
  }
  if (signal?.aborted) {
    native.dispose();
    throw new AbortError('loadModel was aborted');
  }
  return new Model(
    native,
    {
      arch: spec.arch,
      name,
      path: file,
      hparams: spec.hparams,
      contextLength: spec.hparams.contextLength,
      nVocab: spec.hparams.nVocab,
      weightBytes: native.weightBytes(),
      tensorCount: spec.tensors.length,
      threads,
      device: typeof native.device === 'function' ? native.device() : device,
      weightLayouts: typeof native.weightLayouts === 'function' ? Object.freeze(native.weightLayouts().map((l) => Object.freeze(l))) : [],
    },
    tokenizer,
    typeof addon.sampleToken === 'function' ? addon.sampleToken : undefined,
  );
}

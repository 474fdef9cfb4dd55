/**
 * Flags shared by `run` and `ppl`: value parsers for commander (a bad value is a usage error: the
 * message on stderr, exit code 1), the attention / K/V / thread flags and their translation to
 * SessionOptions, and Ctrl-C handling.
 */
import * as fs from 'fs';

import { type Command, InvalidArgumentError as UsageError, Option } from 'commander';

import { InvalidArgumentError } from '../errors';
import type { GpuOption } from '../model';
import { KV_CACHE_TYPES, type KvCacheType, type LambdaAttentionOptions, type SessionOptions } from '../session/options';

const INT_MAX = 2 ** 31 - 1;

/** Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it. */
export const EXIT_INTERRUPTED = 130;

/** An integer in [min, max]; accepts a `k` suffix (×1024): `8k` = 8192. */
export function parseIntFlag(min: number, max = INT_MAX): (value: string) => number {
  return (value: string) => {
    const m = /^\s*(\d+)(k?)\s*$/i.exec(value);
    const n = m ? Number(m[1]) * (m[2] ? 1024 : 1) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`expected an integer in [${min}, ${max}]`);
    return n;
  };
}

/** A finite number passing `ok` (described by `range` in the error). */
export function parseNumberFlag(ok: (v: number) => boolean, range: string): (value: string) => number {
  return (value: string) => {
    const n = value.trim() === '' ? NaN : Number(value);
    if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`expected ${range}`);
    return n;
  };
}

/** `<n|inf>`: an integer >= 0 or Infinity (`inf`, `infinity`, `unlimited`). */
export function parseCountOrInf(value: string): number {
  if (/^\s*(inf|infinity|unlimited)\s*$/i.test(value)) return Infinity;
  return parseIntFlag(0, Number.MAX_SAFE_INTEGER)(value);
}

/** A comma-separated list of distinct names from `allowed`. */
export function parseNameList(allowed: readonly string[]): (value: string) => string[] {
  return (value: string) => {
    const names = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (names.length === 0) throw new UsageError(`expected one or more of ${allowed.join(', ')}, comma-separated`);
    for (const name of names) if (!allowed.includes(name)) throw new UsageError(`unknown "${name}"; expected ${allowed.join(', ')}`);
    if (new Set(names).size !== names.length) throw new UsageError('a name is repeated');
    return names;
  };
}

/** Repeatable string flag; `\n`, `\t` and `\\` in the value stand for newline, tab and backslash. */
export function collectEscaped(value: string, previous: string[] | undefined): string[] {
  const text = value.replace(/\\(n|t|\\)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : '\\'));
  if (text.length === 0) throw new UsageError('expected a non-empty string');
  return [...(previous ?? []), text];
}

/** `--gpu <on|off|auto>`, shared by every command that loads a model (loadModel's `gpu` option). */
export function gpuFlag(): Option {
  return new Option(
    '--gpu <mode>',
    'where the model runs: on (GPU; needs a CUDA build, LMI_CUDA=1, and a device), off (CPU), auto (the GPU when there is one) (default: off)',
  ).choices(['on', 'off', 'auto']);
}

export type GpuFlag = 'on' | 'off' | 'auto';

/** loadModel's `gpu` option for a `--gpu` value (absent: the CPU). */
export function gpuFromFlag(flag: GpuFlag | undefined): GpuOption {
  return flag === 'on' ? true : flag === 'auto' ? 'auto' : false;
}

export interface SessionFlags {
  attention: 'lambda' | 'vanilla';
  nGlobal?: number;
  nLocal?: number;
  limitDistance?: number;
  kvType?: KvCacheType;
  threads?: number;
  gpu?: GpuFlag;
}

/** The model / attention / K/V / thread / GPU flags (`--attention` only when `withAttention`). */
export function addSessionFlags(cmd: Command, withAttention: boolean): Command {
  cmd.requiredOption('-m, --model <file.gguf>', 'the GGUF model');
  if (withAttention)
    cmd.addOption(new Option('--attention <kind>', 'lambda (LM-Infinite: Λ mask + distance limit) or vanilla (plain causal attention over the whole history)')
      .choices(['lambda', 'vanilla'])
      .default('lambda'));
  return cmd
    .option('--n-global <n>', 'Λ: pinned tokens at the start of the stream (default 10)', parseIntFlag(0))
    .option('--n-local <n>', "Λ: local window (default: the model's training length)", parseIntFlag(1))
    .option('--limit-distance <n>', 'Λ: distance cap of the global branch (default: n-local)', parseIntFlag(0))
    .addOption(new Option('--kv-type <type>', 'K/V storage type (default f16)').choices(KV_CACHE_TYPES))
    .option('--threads <n>', 'compute threads (default: about the number of physical cores)', parseIntFlag(1, 1024))
    .addOption(gpuFlag());
}

/** Λ attention settings from the flags (undefined fields take the session defaults). */
export function lambdaFromFlags(f: SessionFlags): LambdaAttentionOptions {
  const a: LambdaAttentionOptions = {};
  if (f.nGlobal !== undefined) a.nGlobal = f.nGlobal;
  if (f.nLocal !== undefined) a.nLocal = f.nLocal;
  if (f.limitDistance !== undefined) a.limitDistance = f.limitDistance;
  return a;
}

/** Session options for one mode; Λ-only flags with vanilla attention are refused. */
export function sessionOptionsFor(mode: 'lambda' | 'vanilla', f: SessionFlags, vanillaMax: number, lambdaOnlyFlagsAreErrors: boolean): SessionOptions {
  const common: SessionOptions = {};
  if (f.kvType !== undefined) common.kvType = f.kvType;
  if (f.threads !== undefined) common.threads = f.threads;
  if (mode === 'vanilla') {
    if (lambdaOnlyFlagsAreErrors) {
      const given = (['nGlobal', 'nLocal', 'limitDistance'] as const).filter((k) => f[k] !== undefined);
      if (given.length > 0)
        throw new InvalidArgumentError(`${given.map(flagName).join(', ')} only applies to --attention lambda`);
    }
    return { ...common, attention: 'vanilla', maxContext: vanillaMax };
  }
  return { ...common, attention: lambdaFromFlags(f) };
}

function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * Ctrl-C: the first SIGINT aborts `controller` (the command stops cleanly between tokens or
 * chunks); a second one exits at once with EXIT_INTERRUPTED. Returns the function that removes
 * the handler.
 */
export function abortOnSigint(controller: AbortController): () => void {
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(EXIT_INTERRUPTED);
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  return () => {
    process.off('SIGINT', onSigint);
  };
}

/** Reads a UTF-8 file named on the command line; a failure is an InvalidArgumentError naming it. */
export async function readTextFile(file: string, what: string): Promise<string> {
  try {
    return await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${what} "${file}": ${(err as Error).message}`, { cause: err });
  }
}

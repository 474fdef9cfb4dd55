import { existsSync } from 'fs';
import { createRequire } from 'module';
import * as path from 'path';

import {
  DisposedError,
  GgufFormatError,
  InvalidArgumentError,
  LmiError,
  NativeBuildError,
  NativeError,
  UnsupportedError,
} from '../errors';
import type { NativeAddon } from './types';

/** The folder holding lm-infinite's package.json, from the source tree (lib/native) or the bundle (dist). */
function findPackageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      const name = (nodeRequire(manifest) as { name?: string }).name;
      if (name === 'lm-infinite') return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new NativeBuildError(`cannot find lm-infinite's package.json above ${__dirname}`);
    dir = parent;
  }
}

const nodeRequire = createRequire(__filename);

interface BuildScript {
  buildAddon(options: { buildDir: string; ifMissing: boolean; onLine: (line: string) => void }): Promise<string>;
  defaultBuildDir(): string;
  cacheBuildDir(): string;
  addonPathIn(dir: string): string;
  isWritable(dir: string): boolean;
}

export interface AddonLoadOptions {
  /** Called with each line of build output when the addon has to be built on first use. */
  onBuildOutput?: (line: string) => void;
}

let loading: Promise<NativeAddon> | undefined;

/**
 * The native addon, built on first use when no install script built it (npm 11 holds back a
 * dependency's install scripts until the user approves them). LMI_ADDON_PATH overrides the location.
 */
export function loadAddon(options: AddonLoadOptions = {}): Promise<NativeAddon> {
  loading ??= locateOrBuild(options).catch((err) => {
    loading = undefined;
    throw err;
  });
  return loading;
}

async function locateOrBuild(options: AddonLoadOptions): Promise<NativeAddon> {
  const explicit = process.env.LMI_ADDON_PATH;
  if (explicit) return requireAddon(path.resolve(explicit));

  const root = findPackageRoot();
  const build = nodeRequire(path.join(root, 'scripts', 'build-native.cjs')) as BuildScript;
  const candidates = [build.defaultBuildDir(), build.cacheBuildDir()];
  for (const dir of candidates) {
    const addon = build.addonPathIn(dir);
    if (existsSync(addon)) return requireAddon(addon);
  }

  const buildDir = build.isWritable(path.dirname(candidates[0])) ? candidates[0] : candidates[1];
  const report = options.onBuildOutput ?? defaultBuildReporter();
  report(`lm-infinite: the native addon is not built yet; building it now into ${buildDir} (once; 1-3 minutes) ...`);
  let addonPath: string;
  try {
    addonPath = await build.buildAddon({ buildDir, ifMissing: true, onLine: report });
  } catch (err) {
    throw new NativeBuildError((err as Error).message, { cause: err });
  }
  report('lm-infinite: native addon built.');
  return requireAddon(addonPath);
}

function defaultBuildReporter(): (line: string) => void {
  return (line) => {
    if (line.startsWith('lm-infinite:') || /^\[\s*\d+%\]/.test(line)) process.stderr.write(`${line}\n`);
  };
}

function requireAddon(file: string): NativeAddon {
  try {
    return nodeRequire(file) as NativeAddon;
  } catch (err) {
    throw new NativeBuildError(
      `cannot load the native addon at ${file}: ${(err as Error).message}. ` +
        'Remove the file to have it rebuilt on next use, or rebuild it with `node scripts/build-native.cjs` in the package folder.',
      { cause: err },
    );
  }
}

/** Turns an error thrown or rejected by the addon into the package's typed error. */
export function fromNativeError(err: unknown): Error {
  if (err instanceof LmiError) return err;
  const e = err as { code?: string; message?: string };
  const message = e?.message ?? String(err);
  switch (e?.code) {
    case 'INVALID_ARGUMENT':
      return new InvalidArgumentError(message, { cause: err });
    case 'UNSUPPORTED':
      return new UnsupportedError(message, { cause: err });
    case 'GGUF_FORMAT':
      return new GgufFormatError(message, { cause: err });
    case 'DISPOSED':
      return new DisposedError('native object', { message, cause: err });
    default:
      return new NativeError(message, { cause: err });
  }
}

/** Calls into the addon, converting both synchronous throws and rejections into typed errors. */
export async function callNative<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromNativeError(err);
  }
}

'use strict';
// The one way the native addon gets built: cmake-js over CMakeLists.txt, offline (package.json's
// binary.napi_versions makes cmake-js use the node-api-headers package instead of downloading
// headers), with ggml from the pinned nodejs-whisper source tree unless GGML_SOURCE_DIR says otherwise.
// Used by the package's install script, by the lazy first-use build in lib/native/addon.ts, and by
// binding.gyp (node-gyp delegates here).
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

const packageRoot = path.resolve(__dirname, '..');
const ADDON_RELATIVE = path.join('Release', 'lm_infinite.node');

function resolveGgmlSource() {
  const fromEnv = process.env.GGML_SOURCE_DIR || process.env.LMI_GGML_SOURCE_DIR;
  if (fromEnv) return path.resolve(fromEnv);
  let whisperPackageJson;
  try {
    whisperPackageJson = require.resolve('nodejs-whisper/package.json', { paths: [packageRoot] });
  } catch (err) {
    throw new Error(
      'lm-infinite: the ggml sources come from the npm package nodejs-whisper@0.3.1, which is not installed. ' +
        'Run `npm install`, or set GGML_SOURCE_DIR to a ggml checkout.',
    );
  }
  return path.join(path.dirname(whisperPackageJson), 'cpp', 'whisper.cpp', 'ggml');
}

/** LMI_CUDA=1 (or on / true / yes) in the environment asks for a CUDA build. */
function cudaRequested() {
  return /^(1|on|true|yes)$/i.test((process.env.LMI_CUDA || '').trim());
}

/** Whether the build folder was last configured with LMI_CUDA on (its CMake cache says so). */
function builtWithCuda(buildDir) {
  try {
    return /^LMI_CUDA:BOOL=(ON|1|TRUE|YES)$/im.test(fs.readFileSync(path.join(buildDir, 'CMakeCache.txt'), 'utf8'));
  } catch {
    return false;
  }
}

function defaultBuildDir() {
  return path.join(packageRoot, 'build');
}

/** Where a build that cannot write into the package folder goes: a per-user cache keyed by version and ABI. */
function cacheBuildDir() {
  const version = require(path.join(packageRoot, 'package.json')).version;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'lm-infinite', `${version}-napi-${process.platform}-${process.arch}`);
}

function addonPathIn(buildDir) {
  return path.join(buildDir, ADDON_RELATIVE);
}

function isWritable(dir) {
  let probe = dir;
  while (!fs.existsSync(probe)) probe = path.dirname(probe);
  try {
    fs.accessSync(probe, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** A build directory lock shared by concurrent processes (two servers starting at once). */
async function withLock(buildDir, fn) {
  fs.mkdirSync(path.dirname(buildDir), { recursive: true });
  const lockDir = `${buildDir}.lock`;
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      fs.writeFileSync(path.join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      let holder = NaN;
      try {
        holder = Number(fs.readFileSync(path.join(lockDir, 'pid'), 'utf8'));
      } catch {}
      let alive = false;
      if (Number.isInteger(holder) && holder > 0) {
        try {
          process.kill(holder, 0);
          alive = true;
        } catch {}
      }
      if (!alive) {
        fs.rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}

/**
 * Builds the addon into buildDir and resolves with the path of the .node file.
 * onLine receives each line of build output (for progress); the last lines are kept for the error message.
 * tests: also build the C++ tests and benchmarks (a development checkout; the published package has no bench/).
 */
async function buildAddon({
  buildDir = defaultBuildDir(),
  onLine = () => {},
  ifMissing = false,
  tests = process.env.LMI_BUILD_TESTS === 'ON',
} = {}) {
  return withLock(buildDir, async () => {
    const addon = addonPathIn(buildDir);
    // An existing addon will do, unless CUDA is asked for and it was built without (`LMI_CUDA=1 npm
    // rebuild` over a CPU-only install).
    if (ifMissing && fs.existsSync(addon) && (!cudaRequested() || builtWithCuda(buildDir))) return addon;
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [packageRoot] });
    const addonApiDir = require(require.resolve('node-addon-api', { paths: [packageRoot] })).include_dir;
    const options = [
      '--directory', packageRoot,
      '--out', buildDir,
      '--parallel', String(Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length)),
      `--CDGGML_SOURCE_DIR=${resolveGgmlSource()}`,
      `--CDNODE_ADDON_API_DIR=${addonApiDir.replace(/^"|"$/g, '')}`,
      `--CDLMI_BUILD_TESTS=${tests ? 'ON' : 'OFF'}`,
    ];
    // CUDA (ggml's CUDA backend and the CUDA Λ kernel) only when asked: LMI_CUDA=1. Passed either
    // way, so the same build folder is reconfigured in and out of CUDA (CMakeLists.txt forces
    // GGML_CUDA to follow it).
    options.push(`--CDLMI_CUDA=${cudaRequested() ? 'ON' : 'OFF'}`);
    const tail = [];
    const cmakeJsRun = (command) =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [cmakeJs, command, ...options], { cwd: packageRoot, stdio: ['ignore', 'pipe', 'pipe'] });
        const onData = (chunk) => {
          for (const line of chunk.toString('utf8').split(/\r?\n/)) {
            if (!line) continue;
            tail.push(line);
            if (tail.length > 40) tail.shift();
            onLine(line);
          }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.on('error', reject);
        child.on('close', resolve);
      });
    // cmake-js build configures only a build folder that has never been configured, so options that
    // change (tests on after an install-time build without them) would be ignored: configure every time.
    let code = await cmakeJsRun('configure');
    if (code === 0) code = await cmakeJsRun('build');
    if (code !== 0 || !fs.existsSync(addon)) {
      throw new Error(
        `lm-infinite: building the native addon failed (cmake-js exit code ${code}). It needs CMake >= 3.18 ` +
          `and a C++17 compiler` +
          (cudaRequested() ? '; with LMI_CUDA=1 also the CUDA toolkit (nvcc, cuBLAS; unset LMI_CUDA for a CPU-only build)' : '') +
          `. Last lines of the build:\n${tail.join('\n')}`,
      );
    }
    return addon;
  });
}

module.exports = { buildAddon, defaultBuildDir, cacheBuildDir, addonPathIn, isWritable, resolveGgmlSource, cudaRequested, packageRoot };

if (require.main === module) {
  const ifMissing = process.argv.includes('--if-missing');
  const tests = process.argv.includes('--tests') || process.env.LMI_BUILD_TESTS === 'ON';
  const outIndex = process.argv.indexOf('--out');
  const buildDir = outIndex > 0 ? path.resolve(process.argv[outIndex + 1]) : defaultBuildDir();
  const copyIndex = process.argv.indexOf('--copy-to');
  const copyTo = copyIndex > 0 ? path.resolve(process.argv[copyIndex + 1]) : undefined;
  const verbose = process.argv.includes('--verbose') || process.env.LMI_BUILD_VERBOSE === '1';
  process.stderr.write(`lm-infinite: building the native addon${cudaRequested() ? ' with CUDA' : ''} into ${buildDir} ...\n`);
  buildAddon({
    buildDir,
    ifMissing,
    tests,
    onLine: (line) => {
      if (verbose || /^\[\s*\d+%\]|error|warning: unused/i.test(line)) process.stderr.write(`  ${line}\n`);
    },
  }).then(
    (addon) => {
      if (copyTo) {
        fs.mkdirSync(copyTo, { recursive: true });
        fs.copyFileSync(addon, path.join(copyTo, path.basename(addon)));
        addon = path.join(copyTo, path.basename(addon));
      }
      process.stderr.write(`lm-infinite: native addon ready: ${path.relative(process.cwd(), addon) || addon}\n`);
    },
    (err) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
}

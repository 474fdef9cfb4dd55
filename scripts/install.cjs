'use strict';
// npm's install hook. It runs for this repository's own `npm install` / `npm ci`, and for a
// consumer only once they approve the package's install scripts (npm 11 holds them back
// until then); without it, the addon is built on first use instead (lib/native/addon.ts).
if (process.env.LMI_SKIP_INSTALL_BUILD === '1') process.exit(0);
const path = require('path');
const { buildAddon, defaultBuildDir, isWritable } = require('./build-native.cjs');

const buildDir = defaultBuildDir();
if (!isWritable(path.dirname(buildDir))) {
  process.stderr.write('lm-infinite: package folder is read-only; the addon will be built on first use.\n');
  process.exit(0);
}
process.stderr.write('lm-infinite: building the native addon (ggml and the attention kernel; 1-3 minutes) ...\n');
buildAddon({
  buildDir,
  ifMissing: true,
  onLine: (line) => {
    if (/^\[\s*\d+%\]/.test(line)) process.stderr.write(`  ${line}\n`);
  },
}).then(
  () => process.stderr.write('lm-infinite: native addon built.\n'),
  (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  },
);

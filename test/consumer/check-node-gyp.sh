#!/usr/bin/env bash
# binding.gyp must really build the addon: `node-gyp rebuild` (npm's bundled node-gyp, against the
# Node headers npm is configured with) in a clean copy of the committed tree, then load the result.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$repo/.scratch/gyp-check"
rm -rf "$work"
git -C "$repo" clone -q "$repo" "$work"
ln -s "$repo/node_modules" "$work/node_modules"
cd "$work"
gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
nodedir="$(npm config get nodedir)"
args=(rebuild)
if [ -n "$nodedir" ] && [ "$nodedir" != "undefined" ] && [ "$nodedir" != "null" ]; then args+=(--nodedir="$nodedir"); fi
node "$gyp" "${args[@]}" > gyp.log 2>&1 || { tail -n 40 gyp.log; exit 1; }
node -e "
const addon = require('./build/Release/lm_infinite.node');
const info = addon.systemInfo();
if (!/^\d+\.\d+\.\d+$/.test(info.ggmlVersion)) throw new Error('unexpected systemInfo ' + JSON.stringify(info));
if (typeof addon.attention !== 'function' || typeof addon.loadModel !== 'function') throw new Error('incomplete addon');
console.log('node-gyp rebuild: OK (ggml ' + info.ggmlVersion + ')');
"

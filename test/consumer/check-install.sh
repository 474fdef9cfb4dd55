#!/usr/bin/env bash
# The path a user really takes: `npm install lm-infinite` into an empty project. npm 11 holds back
# a dependency's install scripts until approved, so nothing is built at install; the first call
# builds the addon (with progress on stderr) and then works, from CommonJS and from ESM.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$repo/.scratch/consumer"
rm -rf "$work" && mkdir -p "$work/project"

(cd "$repo" && npm pack --silent --pack-destination "$work" >/dev/null)
tarball="$(ls "$work"/lm-infinite-*.tgz)"
cd "$work/project"
npm init -y >/dev/null
npm install --no-audit --no-fund "$tarball" 2>&1 | tail -n 3
test ! -e node_modules/lm-infinite/build/Release/lm_infinite.node || { echo "unexpected: addon built at install"; exit 1; }

cp "$repo/test/consumer/use.cjs" "$repo/test/consumer/use.mjs" .
echo "-- first use from CommonJS (builds the addon)"
node use.cjs
test -e node_modules/lm-infinite/build/Release/lm_infinite.node
echo "-- ESM, addon already built"
node use.mjs
echo "-- the CLI"
npx --no-install lm-infinite info
echo "consumer install: OK"

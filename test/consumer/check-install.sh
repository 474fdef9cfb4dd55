#!/usr/bin/env bash
# The paths a user really takes: `npm install lm-infinite` into an empty project.
#  1. Install scripts held back (npm 11 does this for registry dependencies until the user
#     approves them; simulated with --ignore-scripts): nothing is built at install, the first
#     call builds the addon (progress on stderr) and then works, from CommonJS, ESM and the CLI.
#  2. Install scripts allowed: the install script builds the addon at install time.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$repo/.scratch/consumer"
rm -rf "$work" && mkdir -p "$work"

(cd "$repo" && npm pack --silent --pack-destination "$work" >/dev/null)
tarball="$(ls "$work"/lm-infinite-*.tgz)"

echo "-- 1. install with scripts held back"
mkdir "$work/lazy" && cd "$work/lazy"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts "$tarball" 2>&1 | tail -n 2
test ! -e node_modules/lm-infinite/build/Release/lm_infinite.node || { echo "unexpected: addon built at install"; exit 1; }
cp "$repo/test/consumer/use.cjs" "$repo/test/consumer/use.mjs" .
echo "-- first use from CommonJS (builds the addon)"
node use.cjs
test -e node_modules/lm-infinite/build/Release/lm_infinite.node
echo "-- ESM, addon already built"
node use.mjs
echo "-- the CLI"
npx --no-install lm-infinite info

echo "-- 2. install with scripts allowed"
mkdir "$work/eager" && cd "$work/eager"
npm init -y >/dev/null
npm install --no-audit --no-fund --foreground-scripts "$tarball" 2>&1 | grep -E "lm-infinite|added" | tail -n 4
test -e node_modules/lm-infinite/build/Release/lm_infinite.node || { echo "install script did not build the addon"; exit 1; }
cp "$repo/test/consumer/use.cjs" .
node use.cjs
echo "consumer install: OK"

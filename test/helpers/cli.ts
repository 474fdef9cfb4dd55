/** Running the built CLI (dist/cli.cjs, which `npm test` builds before jest) from tests. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

export const cliPath = path.resolve(__dirname, '..', '..', 'dist', 'cli.cjs');

/** Throws unless dist/cli.cjs exists; call from beforeAll. */
export function requireBuiltCli(): void {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run \`npm run build:ts\` (npm test does) first`);
}

/** Runs `lm-infinite ...args` to completion; stdin gets `input` (empty by default). */
export function runCli(args: string[], input = ''): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 120_000, input });
}

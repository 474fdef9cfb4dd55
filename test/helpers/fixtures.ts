/**
 * Where the shared test fixtures are: `$LMI_FIXTURES`, else `../shared/fixtures` beside the repo.
 * Tests that need them fail loudly (they never skip) when they are absent.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';

export function fixturesDir(): string {
  const dir = process.env.LMI_FIXTURES ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'fixtures');
  if (!existsSync(path.join(dir, 'PROVENANCE.md')))
    throw new Error(`test fixtures not found at ${dir}; set LMI_FIXTURES to the shared/fixtures folder (see its PROVENANCE.md)`);
  return dir;
}

/** A fixture file by its path inside the fixtures folder, e.g. 'stories260K/stories260K.gguf'. */
export function fixturePath(rel: string): string {
  const p = path.join(fixturesDir(), rel);
  if (!existsSync(p)) throw new Error(`fixture ${rel} is missing from ${fixturesDir()}`);
  return p;
}

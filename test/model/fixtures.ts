/** Fixture access for the model and session tests: `$LMI_FIXTURES`, else `../shared/fixtures` from the repo root. */
import * as fs from 'fs';
import * as path from 'path';

export function fixturesDir(): string {
  const dir = process.env.LMI_FIXTURES ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'fixtures');
  if (!fs.existsSync(path.join(dir, 'PROVENANCE.md')))
    throw new Error(`test fixtures not found at ${dir}; set LMI_FIXTURES to the shared/fixtures folder (see its PROVENANCE.md)`);
  return dir;
}

export const stories260K = (): string => path.join(fixturesDir(), 'stories260K', 'stories260K.gguf');

import { readFileSync } from 'fs';
import * as path from 'path';

function readVersion(): string {
  let dir = __dirname;
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (manifest.name === 'lm-infinite' && manifest.version) return manifest.version;
    } catch {
      // no package.json here; keep walking up
    }
    const parent = path.dirname(dir);
    if (parent === dir) return '0.0.0';
    dir = parent;
  }
}

/** This package's version, from its package.json. */
export const version = readVersion();

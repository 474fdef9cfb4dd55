import type { Command } from 'commander';

import { InvalidArgumentError } from '../errors';
import { describeGguf, readGguf } from '../gguf';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('Print a GGUF file\'s header, metadata and tensor table (no native code needed).')
    .argument('<model.gguf>', 'the GGUF file')
    .option('--json', 'print the stable JSON form (documented in lib/gguf/describe.ts)')
    .option('--all', 'print every array element instead of the first few')
    .action(async (file: string, opts: { json?: boolean; all?: boolean }) => {
      if (!file) throw new InvalidArgumentError('inspect needs a GGUF file');
      const gguf = await readGguf(file);
      const text = describeGguf(gguf, { json: opts.json, maxArrayItems: opts.all ? Infinity : undefined });
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    });
}

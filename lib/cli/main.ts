#!/usr/bin/env node
import { Command } from 'commander';

import { LmiError } from './errors';
import { loadAddon } from './native/addon';
import { version } from './version';

const program = new Command();
program
  .name('lm-infinite')
  .description('Run GGUF language models on streams far longer than they were trained on (LM-Infinite attention).')
  .version(version);

program
  .command('info')
  .description('Build the native addon if needed, then print what it was built with (ggml version, CPU features).')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    const addon = await loadAddon();
    const info = addon.systemInfo();
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ version, ...info }, null, 2)}\n`);
      return;
    }
    const features = Object.entries(info.cpu).filter(([, on]) => on).map(([name]) => name);
    process.stdout.write(
      `lm-infinite ${version}\nggml ${info.ggmlVersion} (${info.ggmlCommit})\n` +
        `CPU features: ${features.join(' ') || 'none detected'}\nattention kernel: ${info.attentionSimd}\n`,
    );
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof LmiError ? `${err.name} [${err.code}]: ${err.message}` : String((err as Error)?.stack ?? err);
  process.stderr.write(`lm-infinite: ${message}\n`);
  process.exitCode = 1;
});

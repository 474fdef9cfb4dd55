import type { Command } from 'commander';

import { loadAddon } from '../native/addon';
import { version } from '../version';

export function registerInfo(program: Command): void {
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
        `lm-infinite ${version}\nggml ${info.ggmlVersion}\n` +
          `CPU features: ${features.join(' ') || 'none detected'}\nattention kernel: ${info.attentionSimd}\n`,
      );
    });
}

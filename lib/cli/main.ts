#!/usr/bin/env node
import { Command } from 'commander';

import { LmiError } from '../errors';
import { version } from '../version';
import { registerInfo } from './info';
import { registerInspect } from './inspect';

const program = new Command();
program
  .name('lm-infinite')
  .description('Run GGUF language models on streams far longer than they were trained on (LM-Infinite attention).')
  .version(version)
  .showHelpAfterError();

registerInfo(program);
registerInspect(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof LmiError ? `${err.name} [${err.code}]: ${err.message}` : String((err as Error)?.stack ?? err);
  process.stderr.write(`lm-infinite: ${message}\n`);
  process.exitCode = 1;
});

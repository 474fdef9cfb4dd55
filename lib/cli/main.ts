#!/usr/bin/env node
import { Command } from 'commander';

import { LmiError } from '../errors';
import { version } from '../version';
import { registerInfo } from './info';
import { registerBench } from './bench';
import { registerInspect } from './inspect';
import { registerPpl } from './ppl';
import { registerRun } from './run';
import { registerPasskey } from './passkey';
import { registerServe } from './serve';

const program = new Command();
program
  .name('lm-infinite')
  .description('Run GGUF language models on streams far longer than they were trained on (LM-Infinite attention).')
  .version(version)
  .showHelpAfterError();

registerInfo(program);
registerInspect(program);
registerRun(program);
registerPpl(program);
registerPasskey(program);
registerBench(program);
registerServe(program);

// Errors end the command with exit code 1 and one line on stderr; LMI_DEBUG=1 adds the stack.
program.parseAsync(process.argv).catch((err: unknown) => {
  const e = err as Error;
  const message = err instanceof LmiError ? `${err.name} [${err.code}]: ${err.message}` : `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`;
  process.stderr.write(`lm-infinite: ${message}\n`);
  if (process.env.LMI_DEBUG === '1' && e?.stack) process.stderr.write(`${e.stack}\n`);
  process.exitCode = 1;
});

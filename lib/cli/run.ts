/**
 * `lm-infinite run`: load a model, append a prompt, stream the continuation to stdout as it is
 * produced. Λ attention by default, so generation can go on for ever in fixed memory.
 *
 * Exit codes: 0 done (also when the reader of stdout goes away); 1 bad flag or error (message on
 * stderr); 130 stopped by Ctrl-C (SIGINT), after a newline on stdout and no stack trace.
 */
import { type Command, Option } from 'commander';

import { AbortError, InvalidArgumentError } from '../errors';
import { loadModel } from '../model';
import type { Model } from '../model';
import type { GenerateOptions, GenerateResult, SessionOptions } from '../session';
import {
  EXIT_INTERRUPTED,
  type SessionFlags,
  abortOnSigint,
  addSessionFlags,
  collectEscaped,
  lambdaFromFlags,
  parseCountOrInf,
  parseIntFlag,
  parseNumberFlag,
  readTextFile,
  sessionOptionsFor,
  gpuFromFlag,
} from './session-flags';

interface RunFlags extends SessionFlags {
  model: string;
  file?: string;
  maxTokens: number;
  vanillaMax?: number;
  topKMiddle?: number;
  topKFromLayer?: number;
  topKInsertAt?: number;
  maxArchive?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  penaltyLastN?: number;
  seed?: number;
  stop?: string[];
  echo?: boolean;
  verbose?: boolean;
}

const DEFAULT_MAX_TOKENS = 256;

export function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('Generate a continuation of a prompt and stream it to stdout as it is produced.')
    .argument('[prompt]', 'the prompt text; "-", or no prompt and no --file, reads it from stdin')
    .option('-f, --file <file>', 'read the prompt from a file');
  addSessionFlags(cmd, true);
  cmd
    .option('--top-k-middle <k>', 'Λ: also attend to the k best middle keys per head (the paper\'s top-k option; off by default)', parseIntFlag(1))
    .option('--top-k-from-layer <layer>', 'first layer using top-k middle attention (default min(4, layers - 1))', parseIntFlag(0))
    .option('--top-k-insert-at <d>', 'distance the kept middle keys are attended at (default n-local / 2)', parseIntFlag(0))
    .option('--max-archive <n>', 'top-k: archive slots for evicted keys, allocated up front (default: prompt + max-tokens; required with --max-tokens inf)', parseIntFlag(1))
    .option('--vanilla-max <n>', 'vanilla: K/V slots allocated up front = longest stream, prompt included (default: prompt + max-tokens, or the training length with --max-tokens inf)', parseIntFlag(1))
    .addOption(new Option('-n, --max-tokens <n|inf>', 'tokens to generate at most; inf: until an end-of-generation token, a stop string or Ctrl-C')
      .argParser(parseCountOrInf)
      .default(DEFAULT_MAX_TOKENS))
    .option('--temperature <t>', '0 = greedy (default 0.8)', parseNumberFlag((v) => v >= 0, 'a number >= 0'))
    .option('--top-k <k>', 'sample from the k most likely tokens; 0 = off (default 40)', parseIntFlag(0))
    .option('--top-p <p>', 'nucleus sampling; 1 = off (default 0.95)', parseNumberFlag((v) => v > 0 && v <= 1, 'a number in (0, 1]'))
    .option('--min-p <p>', 'drop tokens below p × the best one\'s probability; 0 = off (default 0.05)', parseNumberFlag((v) => v >= 0 && v <= 1, 'a number in [0, 1]'))
    .option('--repeat-penalty <x>', 'divide the logits of recent tokens by x; 1 = off (default 1)', parseNumberFlag((v) => v > 0, 'a number > 0'))
    .option('--presence-penalty <x>', 'subtract x from the logits of recent tokens (default 0)', parseNumberFlag(() => true, 'a number'))
    .option('--frequency-penalty <x>', 'subtract x × count from the logits of recent tokens (default 0)', parseNumberFlag(() => true, 'a number'))
    .option('--penalty-last-n <n>', 'recent tokens the penalties look at (default 64)', parseIntFlag(0, 8192))
    .option('--seed <n>', 'seed of the sampler (default: random)', parseIntFlag(0, 2 ** 32 - 1))
    .option('--stop <text>', 'stop before this text (repeatable; \\n, \\t, \\\\ are escapes)', collectEscaped)
    .option('--echo', 'print the prompt before the continuation')
    .option('-v, --verbose', 'print settings and statistics (tokens, tokens/s, K/V bytes) to stderr')
    .addHelpText(
      'after',
      `
The continuation goes to stdout as it is generated; nothing else does (statistics and errors go to
stderr). Generation ends after --max-tokens tokens, at an end-of-generation token, at a --stop
string (not printed), or on Ctrl-C.

Exit codes: 0 done (also when stdout's reader closes the pipe); 1 bad flag or error;
130 stopped by Ctrl-C (a newline is printed first; a second Ctrl-C exits at once).

Examples:
  lm-infinite run -m model.gguf "Once upon a time" --max-tokens 64
  echo "Once upon a time" | lm-infinite run -m model.gguf --temperature 0 --max-tokens inf
  lm-infinite run -m model.gguf -f prompt.txt --n-local 2048 --stop '\\n\\n' --verbose`,
    )
    .action(async (prompt: string | undefined, flags: RunFlags) => {
      process.exitCode = await run(prompt, flags);
    });
}

async function readPrompt(prompt: string | undefined, file: string | undefined): Promise<string> {
  if (prompt !== undefined && file !== undefined) throw new InvalidArgumentError('give the prompt as an argument or with --file, not both');
  if (file !== undefined) return readTextFile(file, 'the prompt file');
  if (prompt !== undefined && prompt !== '-') return prompt;
  if (process.stdin.isTTY) process.stderr.write('lm-infinite: reading the prompt from stdin (end it with Ctrl-D)\n');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function topKFlagsGiven(f: RunFlags): string[] {
  const names: [keyof RunFlags, string][] = [
    ['topKFromLayer', '--top-k-from-layer'],
    ['topKInsertAt', '--top-k-insert-at'],
    ['maxArchive', '--max-archive'],
  ];
  return names.filter(([k]) => f[k] !== undefined).map(([, n]) => n);
}

/** Session options from the flags, for a prompt of `promptCount` tokens; also the effective maxTokens. */
function sessionOptions(f: RunFlags, promptCount: number, model: Model): { options: SessionOptions; maxTokens: number } {
  let maxTokens = f.maxTokens;
  if (f.attention === 'vanilla') {
    if (f.topKMiddle !== undefined || topKFlagsGiven(f).length > 0)
      throw new InvalidArgumentError('--top-k-middle and its flags only apply to --attention lambda');
    const slots = f.vanillaMax ?? (Number.isFinite(maxTokens) ? promptCount + maxTokens : model.info.contextLength);
    if (promptCount > slots)
      throw new InvalidArgumentError(`the prompt has ${promptCount} tokens, more than --vanilla-max ${slots}`);
    maxTokens = Math.min(maxTokens, slots - promptCount);
    return { options: sessionOptionsFor('vanilla', f, Math.max(1, slots), true), maxTokens };
  }
  if (f.vanillaMax !== undefined) throw new InvalidArgumentError('--vanilla-max only applies to --attention vanilla');
  const options = sessionOptionsFor('lambda', f, 0, true);
  if (f.topKMiddle === undefined) {
    const stray = topKFlagsGiven(f);
    if (stray.length > 0) throw new InvalidArgumentError(`${stray.join(', ')} needs --top-k-middle`);
    return { options, maxTokens };
  }
  let maxArchive = f.maxArchive;
  if (maxArchive === undefined) {
    if (!Number.isFinite(maxTokens))
      throw new InvalidArgumentError('--top-k-middle with --max-tokens inf needs --max-archive: the archive of evicted keys grows by one slot per token');
    maxArchive = Math.max(1, promptCount + maxTokens);
  }
  return {
    options: {
      ...options,
      attention: {
        ...lambdaFromFlags(f),
        topK: {
          k: f.topKMiddle,
          maxArchive,
          ...(f.topKFromLayer !== undefined ? { fromLayer: f.topKFromLayer } : {}),
          ...(f.topKInsertAt !== undefined ? { insertAt: f.topKInsertAt } : {}),
        },
      },
    },
    maxTokens,
  };
}

function generateOptions(f: RunFlags, maxTokens: number, signal: AbortSignal): GenerateOptions {
  const o: GenerateOptions = { maxTokens, signal };
  if (f.temperature !== undefined) o.temperature = f.temperature;
  if (f.topK !== undefined) o.topK = f.topK;
  if (f.topP !== undefined) o.topP = f.topP;
  if (f.minP !== undefined) o.minP = f.minP;
  if (f.repeatPenalty !== undefined) o.repeatPenalty = f.repeatPenalty;
  if (f.presencePenalty !== undefined) o.presencePenalty = f.presencePenalty;
  if (f.frequencyPenalty !== undefined) o.frequencyPenalty = f.frequencyPenalty;
  if (f.penaltyLastN !== undefined) o.penaltyLastN = f.penaltyLastN;
  if (f.seed !== undefined) o.seed = f.seed;
  if (f.stop !== undefined) o.stop = f.stop;
  return o;
}

const rate = (n: number, ms: number) => (ms > 0 ? ((n * 1000) / ms).toFixed(1) : '-');
const log = (line: string) => process.stderr.write(`lm-infinite: ${line}\n`);

async function run(prompt: string | undefined, f: RunFlags): Promise<number> {
  const text = await readPrompt(prompt, f.file);
  const controller = new AbortController();
  const { signal } = controller;
  const removeSigint = abortOnSigint(controller);
  let pipeClosed = false;
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    pipeClosed = true;
    controller.abort();
  };
  process.stdout.on('error', onStdoutError);

  let model: Model | null = null;
  let pieces = 0;
  let genStart = 0;
  let lastChar = '\n';
  const write = (s: string) => {
    if (s.length === 0 || pipeClosed) return;
    process.stdout.write(s);
    lastChar = s[s.length - 1];
  };
  try {
    model = await loadModel(f.model, { signal, gpu: gpuFromFlag(f.gpu), ...(f.threads !== undefined ? { threads: f.threads } : {}) });
    const t = model.tokenizer;
    const ids = t.encode(text, { addSpecial: false });
    if (t.addBos && t.bos !== null) ids.unshift(t.bos);
    const { options, maxTokens } = sessionOptions(f, ids.length, model);
    const session = model.createSession(options);
    if (f.verbose) {
      const a = session.options.attention;
      const att = a === 'vanilla' ? `vanilla (${session.options.maxContext} slots)` : `Λ nGlobal ${a.nGlobal} nLocal ${a.nLocal} limitDistance ${a.limitDistance}${a.topK ? ` top-k ${a.topK.k} from layer ${a.topK.fromLayer} at ${a.topK.insertAt}, archive ${a.topK.maxArchive}` : ''}`;
      log(`${model.info.name ?? f.model} (${model.info.arch}, trained at ${model.info.contextLength} tokens); ${att}; kv ${session.options.kvType} ${session.kvBytes} bytes; ${session.options.threads} threads; ${model.device}`);
    }
    const gen = generateOptions(f, maxTokens, signal);
    if (f.echo) write(text);
    const t0 = performance.now();
    if (ids.length > 0) await session.append(ids, { signal });
    const prefillMs = performance.now() - t0;
    if (f.verbose) log(`prompt: ${ids.length} tokens in ${(prefillMs / 1000).toFixed(2)} s (${rate(ids.length, prefillMs)} tokens/s)`);

    genStart = performance.now();
    const it = session.generate(gen);
    let r = await it.next();
    for (; !r.done; r = await it.next()) {
      pieces++;
      write(r.value.text);
    }
    const genMs = performance.now() - genStart;
    const result: GenerateResult = r.value;
    if (process.stdout.isTTY && lastChar !== '\n') write('\n');
    if (f.verbose) log(`generated ${result.tokens} tokens in ${(genMs / 1000).toFixed(2)} s (${rate(result.tokens, genMs)} tokens/s); ended by ${result.reason}`);
    return 0;
  } catch (err) {
    if (!(err instanceof AbortError) || !signal.aborted) throw err;
    if (pipeClosed) return 0;
    write('\n');
    if (f.verbose) {
      const ms = genStart > 0 ? performance.now() - genStart : 0;
      log(`interrupted after ${pieces} generated tokens in ${(ms / 1000).toFixed(2)} s (${rate(pieces, ms)} tokens/s)`);
    }
    return EXIT_INTERRUPTED;
  } finally {
    removeSigint();
    process.stdout.off('error', onStdoutError);
    await model?.dispose();
  }
}

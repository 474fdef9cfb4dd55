/**
 * `lm-infinite ppl`: perplexity against position. The text is scored as one stream (BOS + its
 * tokens), in each attention mode in turn, and the NLL is reported per position bucket.
 *
 * Memory: Λ attention holds a fixed ring of K/V (nGlobal + nLocal slots), whatever the length;
 * vanilla allocates a slot per token up to --vanilla-max. The text is read and tokenized up front
 * (4 bytes per token); NLL is summed per bucket as chunks are scored, never kept per token.
 *
 * Exit codes: 0 done; 1 bad flag or error; 130 stopped by Ctrl-C.
 */
import * as fs from 'fs';
import * as path from 'path';

import { SingleBar } from 'cli-progress';
import { type Command } from 'commander';

import { AbortError, InvalidArgumentError } from '../errors';
import { loadModel, type Model } from '../model';
import {
  BucketAccumulator,
  type ModeResult,
  type PplReport,
  formatTable,
  makeBuckets,
  nllPlotSpec,
  parseBucketStarts,
  powerOfTwoStarts,
  reportPlotPoints,
} from './ppl-report';
import { renderVegaLiteSvg } from '../report/plot';
import { EXIT_INTERRUPTED, type SessionFlags, abortOnSigint, addSessionFlags, gpuFromFlag, parseIntFlag, parseNameList, readTextFile, sessionOptionsFor } from './session-flags';

type Mode = 'lambda' | 'vanilla';

interface PplFlags extends SessionFlags {
  model: string;
  modes: Mode[];
  vanillaMax: number;
  buckets?: number[];
  maxTokens?: number;
  json?: boolean;
  plot?: string;
}

/** Tokens per score() call: a multiple of the 512-token eval chunk, so the chunking is that of one call. */
const SCORE_STEP = 16384;
const DEFAULT_VANILLA_MAX = 8192;

export function registerPpl(program: Command): void {
  const cmd = program
    .command('ppl')
    .description('Perplexity against position: score a text file as one stream, Λ and vanilla attention side by side, NLL per position bucket.')
    .argument('<text.txt>', 'the text (UTF-8), scored as one stream: BOS + its tokens');
  addSessionFlags(cmd, false);
  cmd
    .option('--modes <list>', 'attention modes, comma-separated: lambda, vanilla', parseNameList(['lambda', 'vanilla']), ['lambda', 'vanilla'])
    .option(
      '--vanilla-max <n>',
      `vanilla scores only the first n tokens: its K/V cache grows with the stream (one slot per token, allocated up front) and its cost per token with the position (default ${DEFAULT_VANILLA_MAX})`,
      parseIntFlag(2),
      DEFAULT_VANILLA_MAX,
    )
    .option('--buckets <starts>', 'bucket starts, e.g. 0,512,1k,4k (k = ×1024; the last bucket runs to the end); default powers of two: 0,512,1k,2k,4k,…', parseBucketStarts)
    .option('--max-tokens <n>', 'score only the first n tokens of the stream (BOS included)', parseIntFlag(2))
    .option('--json', 'print the JSON report (below) instead of the table')
    .option('--plot <out.svg>', 'write an SVG plot of NLL against position, one line per mode')
    .addHelpText(
      'after',
      `
Positions count from 0 at BOS; the token at position p is scored from positions 0 … p-1.
--n-global, --n-local and --limit-distance apply to the lambda mode. A progress bar (tokens/s, ETA)
goes to stderr when stderr is a terminal.

--json prints one object (version 1; fields are only ever added):
  { version: 1, model, text,          the files as given
    tokens,                           stream length (BOS included), after --max-tokens
    buckets: [{ start, end }],        positions [start, end), the same for every mode
    modes: [{ mode: "lambda" | "vanilla",
              attention: { nGlobal, nLocal, limitDistance } | "vanilla", kvType,
              tokens, scored,         tokens evaluated (vanilla: at most --vanilla-max), tokens scored
              nll, ppl,               mean NLL (nats/token) over all scored tokens, exp(nll)
              kvBytes,                K/V memory of the session (fixed at creation)
              rssBytes: { first, last },  process RSS after the first and the last chunk
              seconds, tokensPerSecond,
              buckets: [{ start, end, count, sumNll, nll, ppl }] }],   nll, ppl null when count is 0
    peakRssBytes }

Exit codes: 0 done; 1 bad flag or error; 130 stopped by Ctrl-C.

Example:
  lm-infinite ppl -m model.gguf book.txt --modes lambda,vanilla --vanilla-max 8k --plot ppl.svg`,
    )
    .action(async (textFile: string, flags: PplFlags) => {
      process.exitCode = await ppl(textFile, flags);
    });
}

function progressBar(mode: Mode, total: number): { update(done: number): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${mode.padEnd(7)} [{bar}] {percentage}% | {value}/{total} tokens | {speed} tokens/s | ETA {eta_formatted}`,
    hideCursor: true,
    etaBuffer: 8,
    fps: 5,
  });
  const t0 = performance.now();
  bar.start(total, 0, { speed: '-' });
  return {
    update(done: number) {
      const s = (performance.now() - t0) / 1000;
      bar.update(done, { speed: s > 0 ? (done / s).toFixed(0) : '-' });
    },
    stop() {
      bar.stop();
    },
  };
}

async function scoreMode(model: Model, mode: Mode, ids: Int32Array, f: PplFlags, buckets: ReturnType<typeof makeBuckets>, signal: AbortSignal): Promise<ModeResult> {
  const length = mode === 'vanilla' ? Math.min(ids.length, f.vanillaMax) : ids.length;
  const session = model.createSession(sessionOptionsFor(mode, f, length, false));
  const acc = new BucketAccumulator(buckets);
  const bar = progressBar(mode, length);
  const rss = { first: 0, last: 0 };
  const t0 = performance.now();
  try {
    for (let a = 0; a < length; a += SCORE_STEP) {
      const b = Math.min(length, a + SCORE_STEP);
      const r = await session.score(ids.subarray(a, b), {
        signal,
        onProgress: (p) => bar.update(a + p.done),
      });
      acc.add(r.startPosition, r.nll);
      rss.last = process.memoryUsage.rss();
      if (a === 0) rss.first = rss.last;
    }
    const seconds = (performance.now() - t0) / 1000;
    const a = session.options.attention;
    return {
      mode,
      attention: a === 'vanilla' ? 'vanilla' : { nGlobal: a.nGlobal, nLocal: a.nLocal, limitDistance: a.limitDistance },
      kvType: session.options.kvType,
      tokens: length,
      scored: acc.scored,
      nll: acc.meanNll,
      ppl: Math.exp(acc.meanNll),
      kvBytes: session.kvBytes,
      rssBytes: rss,
      seconds,
      tokensPerSecond: seconds > 0 ? length / seconds : 0,
      buckets: acc.results(),
    };
  } finally {
    bar.stop();
    session.dispose();
  }
}

async function ppl(textFile: string, f: PplFlags): Promise<number> {
  const text = await readTextFile(textFile, 'the text file');
  if (f.plot !== undefined) {
    // fail before scoring, not after
    const dir = path.dirname(path.resolve(f.plot));
    await fs.promises.access(dir, fs.constants.W_OK).catch((err: Error) => {
      throw new InvalidArgumentError(`cannot write the plot "${f.plot}": ${err.message}`, { cause: err });
    });
  }
  const controller = new AbortController();
  const removeSigint = abortOnSigint(controller);
  let model: Model | null = null;
  try {
    model = await loadModel(f.model, { signal: controller.signal, gpu: gpuFromFlag(f.gpu), ...(f.threads !== undefined ? { threads: f.threads } : {}) });
    const t = model.tokenizer;
    const list = t.encode(text, { addSpecial: false });
    if (t.addBos && t.bos !== null) list.unshift(t.bos);
    let ids = Int32Array.from(list);
    if (f.maxTokens !== undefined) ids = ids.subarray(0, f.maxTokens);
    if (ids.length < 2) throw new InvalidArgumentError(`${textFile} gives ${ids.length} token(s); scoring needs at least 2`);
    const buckets = makeBuckets(f.buckets ?? powerOfTwoStarts(ids.length), ids.length);

    const modes: ModeResult[] = [];
    for (const mode of f.modes) modes.push(await scoreMode(model, mode, ids, f, buckets, controller.signal));
    const report: PplReport = {
      version: 1,
      model: f.model,
      text: textFile,
      tokens: ids.length,
      buckets: buckets.map((b) => ({ start: b.start, end: b.end })),
      modes,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    };
    if (f.plot !== undefined) {
      const title = `NLL against position: ${model.info.name ?? 'model'} on ${textFile.split(/[\\/]/).pop()}`;
      const svg = await renderVegaLiteSvg(nllPlotSpec(reportPlotPoints(report), title));
      await fs.promises.writeFile(f.plot, svg).catch((err: Error) => {
        throw new InvalidArgumentError(`cannot write the plot "${f.plot}": ${err.message}`, { cause: err });
      });
    }
    process.stdout.write(f.json ? `${JSON.stringify(report, null, 2)}\n` : formatTable(report));
    return 0;
  } catch (err) {
    if (!(err instanceof AbortError) || !controller.signal.aborted) throw err;
    process.stderr.write('lm-infinite: interrupted\n');
    return EXIT_INTERRUPTED;
  } finally {
    removeSigint();
    await model?.dispose();
  }
}

/**
 * `lm-infinite bench`: decode and prefill tokens/s and memory against stream position, Λ beside
 * vanilla (lib/eval/bench.ts says what is measured and how); a table, --json, --plot.
 */
import { Presets, SingleBar } from 'cli-progress';
import { Option, type Command } from 'commander';

import { BENCH_MODES, type BenchModeName, type BenchReport, runBench } from '../eval/bench';
import { loadModel } from '../model';
import { writeVegaLiteSvg, type VegaLiteSpec } from '../report/plot';
import { choiceList, formatTable, intIn, parseSize, parseSizeList } from './eval-options';
import { type GpuFlag, gpuFlag, gpuFromFlag } from './session-flags';
import { KV_CACHE_TYPES, type KvCacheType } from '../session/options';

interface BenchCliOptions {
  positions: number[];
  modes: BenchModeName[];
  decodeTokens: number;
  chunkSize: number;
  vanillaMaxContext: number;
  nGlobal?: number;
  nLocal?: number;
  limitDistance?: number;
  topK?: number;
  topKFromLayer?: number;
  topKInsertAt?: number;
  kvType: KvCacheType;
  threads?: number;
  gpu?: GpuFlag;
  seed: number;
  json?: boolean;
  plot?: string;
  progress: boolean;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      'Decode and prefill tokens/s and memory (RSS, K/V) against stream position, Λ attention beside vanilla ' +
        '(vanilla past --vanilla-max-context is reported n/a).',
    )
    .argument('<model.gguf>', 'the GGUF model')
    .option('--positions <list>', 'stream positions to measure at, tokens (4k = 4096)', parseSizeList, [1024, 4096, 16384, 65536])
    .option('--modes <list>', `modes, comma-separated: ${BENCH_MODES.join(', ')}`, choiceList(BENCH_MODES), ['lambda', 'vanilla'] as BenchModeName[])
    .option('--decode-tokens <n>', 'greedy decode steps timed at each position', intIn(1, 100_000), 32)
    .option('--chunk-size <n>', 'prefill tokens per native call (the timed prefill piece)', intIn(1, 8192), 512)
    .option('--vanilla-max-context <n>', 'largest position vanilla attention is measured at (16k = 16384); later ones are reported n/a', parseSize, 16384)
    .option('--n-global <n>', 'Λ: pinned first tokens (default 10)', intIn(0, 2 ** 31 - 1))
    .option('--n-local <n>', "Λ: local window (default: the model's training length)", intIn(1, 2 ** 31 - 1))
    .option('--limit-distance <n>', 'Λ: distance cap of the global branch (default: nLocal)', intIn(0, 2 ** 31 - 1))
    .option('--top-k <k>', 'lambda-topk: middle keys kept per query and head (default 5)', intIn(1, 2 ** 31 - 1))
    .option('--top-k-from-layer <l>', 'lambda-topk: first layer with top-k (default min(4, layers - 1))', intIn(0, 100_000))
    .option('--top-k-insert-at <d>', 'lambda-topk: distance the kept middle keys are attended at (default nLocal / 2)', intIn(0, 2 ** 31 - 1))
    .addOption(new Option('--kv-type <type>', 'K/V storage').choices(KV_CACHE_TYPES).default('f16'))
    .option('--threads <n>', 'compute threads (default: about the physical cores)', intIn(1, 1024))
    .addOption(gpuFlag())
    .option('--seed <n>', 'seed of the (pseudo-random) token stream', intIn(0, 2 ** 32 - 1), 1)
    .option('--json', 'print the stable JSON report (schema in lib/eval/bench.ts) instead of a table')
    .option('--plot <file.svg>', 'write tokens/s and memory against position (one line per mode) as SVG')
    .option('--no-progress', 'no progress bar on stderr')
    .action(async (file: string, opts: BenchCliOptions) => {
      const model = await loadModel(file, { gpu: gpuFromFlag(opts.gpu), ...(opts.threads !== undefined ? { threads: opts.threads } : {}) });
      let report: BenchReport;
      const target = Math.max(...opts.positions);
      const bar = opts.progress && process.stderr.isTTY
        ? new SingleBar({ stream: process.stderr, format: 'bench {mode} [{bar}] position {value}/{total}', hideCursor: true }, Presets.shades_classic)
        : null;
      try {
        bar?.start(target, 0, { mode: opts.modes[0] });
        report = await runBench(model, {
          positions: opts.positions,
          modes: opts.modes,
          decodeTokens: opts.decodeTokens,
          chunkSize: opts.chunkSize,
          vanillaMaxContext: opts.vanillaMaxContext,
          lambda: {
            ...(opts.nGlobal !== undefined ? { nGlobal: opts.nGlobal } : {}),
            ...(opts.nLocal !== undefined ? { nLocal: opts.nLocal } : {}),
            ...(opts.limitDistance !== undefined ? { limitDistance: opts.limitDistance } : {}),
          },
          topK: {
            ...(opts.topK !== undefined ? { k: opts.topK } : {}),
            ...(opts.topKFromLayer !== undefined ? { fromLayer: opts.topKFromLayer } : {}),
            ...(opts.topKInsertAt !== undefined ? { insertAt: opts.topKInsertAt } : {}),
          },
          kvType: opts.kvType,
          threads: opts.threads,
          seed: opts.seed,
          onProgress: (mode, position) => bar?.update(Math.min(position, target), { mode }),
        });
      } finally {
        bar?.stop();
        await model.dispose();
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else process.stdout.write(formatBenchReport(report));
      if (opts.plot) {
        await writeVegaLiteSvg(opts.plot, benchPlotSpec(report));
        if (!opts.json) process.stdout.write(`plot written to ${opts.plot}\n`);
      }
    });
}

const MiB = 1024 * 1024;
const rate = (x: number | null) => (x === null ? 'n/a' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const mib = (x: number | null) => (x === null ? 'n/a' : (x / MiB).toFixed(1));

function describeAttention(resolved: unknown): string {
  if (resolved === 'vanilla' || resolved === null || typeof resolved !== 'object') return 'causal, K/V sized per position';
  const a = resolved as { nGlobal: number; nLocal: number; limitDistance: number; topK?: { k: number; fromLayer: number; insertAt: number } };
  let s = `nGlobal ${a.nGlobal}, nLocal ${a.nLocal}, limitDistance ${a.limitDistance}`;
  if (a.topK) s += `; top-k ${a.topK.k} from layer ${a.topK.fromLayer}, insertAt ${a.topK.insertAt}`;
  return s;
}

/** The text report: one row per mode × position. */
export function formatBenchReport(report: BenchReport): string {
  const { model, settings } = report;
  const lines = [
    `bench · ${model.name ?? model.path} (${model.arch}, trained at ${model.contextLength} tokens) · ` +
      `${settings.decodeTokens} decode steps per position · prefill piece ${settings.chunkSize} · K/V ${settings.kvType} · ${settings.threads} thread(s)`,
  ];
  for (const m of report.modes) lines.push(`${m.mode}: ${describeAttention(m.resolved)} (${m.seconds.toFixed(1)} s)`);
  const rows: string[][] = [['mode', 'position', 'decode tok/s', 'prefill tok/s', 'RSS MiB', 'K/V MiB']];
  const notes: string[] = [];
  for (const m of report.modes)
    for (const p of m.points) {
      const mark = p.status === 'ok' ? '' : ` [${notes.push(`${m.mode} at ${p.position}: ${p.status}, ${p.reason ?? ''}`)}]`;
      rows.push([
        m.mode,
        String(p.position),
        rate(p.decodeTokensPerSecond) + mark,
        rate(p.prefillTokensPerSecond),
        mib(p.rssBytes),
        mib(p.kvBytes),
      ]);
    }
  lines.push('', formatTable(rows, { leftColumns: 1 }));
  notes.forEach((n, i) => lines.push(`[${i + 1}] ${n}`));
  lines.push('decode tok/s: tokens / total time. prefill: the last piece before the position.');
  return `${lines.join('\n')}\n`;
}

/** Vega-Lite: decode tok/s, prefill tok/s and memory against position (log scale), one line per mode. */
export function benchPlotSpec(report: BenchReport): VegaLiteSpec {
  const rows = report.modes.flatMap((m) =>
    m.points
      .filter((p) => p.status === 'ok')
      .map((p) => ({ mode: m.mode, position: p.position, decode: p.decodeTokensPerSecond, prefill: p.prefillTokensPerSecond, rss: p.rssBytes! / MiB, kv: p.kvBytes! / MiB })),
  );
  const x = { field: 'position', type: 'quantitative', title: 'stream position (tokens)', scale: { type: 'log', base: 2 } };
  const color = { field: 'mode', type: 'nominal', title: 'mode' };
  const line = (field: string, title: string, yTitle: string): VegaLiteSpec => ({
    title,
    width: 220,
    height: 200,
    data: { values: rows.filter((r) => (r as Record<string, unknown>)[field] !== null) },
    mark: { type: 'line', point: true },
    encoding: { x, y: { field, type: 'quantitative', title: yTitle, scale: { type: 'log' } }, color },
  });
  return {
    $schema: 'https://vega.github.io/vega-lite/v6.json',
    title: {
      text: `lm-infinite bench · ${report.model.name ?? report.model.path} (trained at ${report.model.contextLength} tokens)`,
      subtitle: `${report.settings.decodeTokens} greedy decode steps per position · K/V ${report.settings.kvType} · ${report.settings.threads} thread(s); vanilla measured up to ${report.settings.vanillaMaxContext} tokens`,
    },
    hconcat: [
      line('decode', 'decode', 'tokens / s'),
      line('prefill', `prefill (last ${report.settings.chunkSize}-token piece)`, 'tokens / s'),
      line('kv', 'K/V memory of the session', 'MiB'),
      line('rss', 'process RSS', 'MiB'),
    ],
    resolve: { scale: { color: 'shared' } },
  };
}

/**
 * `lm-infinite passkey`: the passkey-retrieval protocol of lib/eval/passkey.ts over lengths × depths,
 * for vanilla attention, Λ alone and Λ with top-k middle attention; a table, --json, --plot.
 */
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';

import {
  DEFAULT_MAX_NEW_TOKENS,
  PASSKEY_MODES,
  type PasskeyMode,
  type PasskeyModeName,
  type PasskeyModeResult,
  type PasskeyReport,
  buildPlanPrompts,
  evenDepths,
  planPasskey,
  runPasskeyMode,
  sessionOptionsFor,
} from '../eval/passkey';
import { loadModel } from '../model';
import { writeVegaLiteSvg, type VegaLiteSpec } from '../report/plot';
import { choiceList, formatTable, intIn, parseDepths, parseSizeList } from './eval-options';
import { type GpuFlag, gpuFlag, gpuFromFlag } from './session-flags';

interface PasskeyCliOptions {
  modes: PasskeyModeName[];
  lengths: number[];
  depths: number[] | { count: number };
  samples: number;
  seed: number;
  nGlobal?: number;
  nLocal?: number;
  limitDistance?: number;
  topK?: number;
  topKFromLayer?: number;
  topKInsertAt?: number;
  maxNewTokens: number;
  threads?: number;
  gpu?: GpuFlag;
  chunkSize?: number;
  json?: boolean;
  plot?: string;
  progress: boolean;
}

export function registerPasskey(program: Command): void {
  program
    .command('passkey')
    .description(
      'Passkey retrieval (LM-Infinite §5): a key hidden at a depth of a long filler prompt, answered greedily; ' +
        'accuracy by prompt length × key depth for each attention mode.',
    )
    .argument('<model.gguf>', 'the GGUF model')
    .option('--modes <list>', `attention modes, comma-separated: ${PASSKEY_MODES.join(', ')}`, choiceList(PASSKEY_MODES), [...PASSKEY_MODES])
    .option('--lengths <list>', 'prompt lengths in tokens (BOS included; 4k = 4096), each met within 1%', parseSizeList, [512, 1024, 2048, 4096, 8192])
    .option('--depths <n|list>', 'key depths: a count N (evenly spread over 0..1) or fractions of the filler, e.g. 0,0.5,1.0', parseDepths, { count: 5 })
    .option('--samples <n>', 'samples (keys) per length × depth cell', intIn(1, 1_000_000), 10)
    .option('--seed <n>', 'seed of the key generator (sfc32)', intIn(0, 2 ** 32 - 1), 1)
    .option('--n-global <n>', 'Λ: pinned first tokens (default 10)', intIn(0, 2 ** 31 - 1))
    .option('--n-local <n>', "Λ: local window (default: the model's training length)", intIn(1, 2 ** 31 - 1))
    .option('--limit-distance <n>', 'Λ: distance cap of the global branch (default: nLocal)', intIn(0, 2 ** 31 - 1))
    .option('--top-k <k>', 'lambda-topk: middle keys kept per query and head (default 5)', intIn(1, 2 ** 31 - 1))
    .option('--top-k-from-layer <l>', 'lambda-topk: first layer with top-k (default min(4, layers - 1))', intIn(0, 100_000))
    .option('--top-k-insert-at <d>', 'lambda-topk: distance the kept middle keys are attended at (default nLocal / 2)', intIn(0, 2 ** 31 - 1))
    .option('--max-new-tokens <n>', 'tokens generated per answer (greedy)', intIn(1, 1024), DEFAULT_MAX_NEW_TOKENS)
    .option('--threads <n>', 'compute threads (default: about the physical cores)', intIn(1, 1024))
    .addOption(gpuFlag())
    .option('--chunk-size <n>', 'prefill tokens per native call (default 512)', intIn(1, 8192))
    .option('--json', 'print the stable JSON report (schema in lib/eval/passkey.ts) instead of tables')
    .option('--plot <file.svg>', 'write an accuracy heatmap (length × depth, one panel per mode) as SVG')
    .option('--no-progress', 'no progress bar on stderr')
    .action(async (file: string, opts: PasskeyCliOptions) => {
      const report = await runPasskeyCommand(file, opts);
      if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else process.stdout.write(formatPasskeyReport(report));
      if (opts.plot) {
        await writeVegaLiteSvg(opts.plot, passkeyHeatmapSpec(report));
        if (!opts.json) process.stdout.write(`heatmap written to ${opts.plot}\n`);
      }
    });
}

function modesFrom(opts: PasskeyCliOptions): PasskeyMode[] {
  const lambda = {
    ...(opts.nGlobal !== undefined ? { nGlobal: opts.nGlobal } : {}),
    ...(opts.nLocal !== undefined ? { nLocal: opts.nLocal } : {}),
    ...(opts.limitDistance !== undefined ? { limitDistance: opts.limitDistance } : {}),
  };
  const topK = {
    ...(opts.topK !== undefined ? { k: opts.topK } : {}),
    ...(opts.topKFromLayer !== undefined ? { fromLayer: opts.topKFromLayer } : {}),
    ...(opts.topKInsertAt !== undefined ? { insertAt: opts.topKInsertAt } : {}),
  };
  return opts.modes.map((name): PasskeyMode => {
    if (name === 'vanilla') return { name };
    if (name === 'lambda') return { name, lambda };
    return { name, lambda, topK };
  });
}

async function runPasskeyCommand(file: string, opts: PasskeyCliOptions): Promise<PasskeyReport> {
  const depths = Array.isArray(opts.depths) ? opts.depths : evenDepths(opts.depths.count);
  const plan = planPasskey({ lengths: opts.lengths, depths, samples: opts.samples, seed: opts.seed });
  const model = await loadModel(file, { gpu: gpuFromFlag(opts.gpu), ...(opts.threads !== undefined ? { threads: opts.threads } : {}) });
  try {
    const prompts = buildPlanPrompts(model.tokenizer, plan);
    const modes = modesFrom(opts);
    const longest = prompts.reduce((m, p) => Math.max(m, p.tokens.length), 0) + opts.maxNewTokens;
    // Check every mode's options (e.g. --top-k-from-layer against the model's layers) before running any.
    for (const mode of modes) model.createSession(sessionOptionsFor(mode, longest, { threads: opts.threads, chunkSize: opts.chunkSize })).dispose();

    const total = plan.length * modes.length;
    const bar = opts.progress && process.stderr.isTTY && total > 1
      ? new SingleBar({ stream: process.stderr, format: 'passkey {mode} [{bar}] {value}/{total} samples · {eta_formatted} left', hideCursor: true }, Presets.shades_classic)
      : null;
    bar?.start(total, 0, { mode: modes[0].name });
    const results: PasskeyModeResult[] = [];
    try {
      for (const [m, mode] of modes.entries()) {
        results.push(
          await runPasskeyMode(model, mode, plan, prompts, {
            maxNewTokens: opts.maxNewTokens,
            threads: opts.threads,
            chunkSize: opts.chunkSize,
            onSample: (_name, _r, done) => bar?.update(m * plan.length + done, { mode: mode.name }),
          }),
        );
      }
    } finally {
      bar?.stop();
    }
    return {
      schema: 'lm-infinite/passkey@1',
      model: {
        path: file,
        name: model.info.name,
        arch: model.info.arch,
        contextLength: model.info.contextLength,
        nLayer: model.info.hparams.nLayer,
      },
      settings: {
        lengths: opts.lengths,
        depths,
        samples: opts.samples,
        seed: opts.seed,
        maxNewTokens: opts.maxNewTokens,
        threads: model.info.threads,
        chunkSize: opts.chunkSize ?? null,
        keyGenerator: 'sfc32',
      },
      modes: results,
    };
  } finally {
    await model.dispose();
  }
}

const pct = (x: number) => `${Math.round(x * 1000) / 10}%`;
const depthLabel = (d: number) => `${Math.round(d * 1000) / 10}%`;

function describeMode(r: PasskeyModeResult): string {
  const a = r.resolved as { nGlobal?: number; nLocal?: number; limitDistance?: number; topK?: { k: number; fromLayer: number; insertAt: number } } | 'vanilla';
  if (a === 'vanilla' || r.mode === 'vanilla') return 'vanilla (causal attention over everything)';
  let s = `${r.mode} (nGlobal ${a.nGlobal}, nLocal ${a.nLocal}, limitDistance ${a.limitDistance}`;
  if (a.topK) s += `; top-k ${a.topK.k} from layer ${a.topK.fromLayer}, insertAt ${a.topK.insertAt}`;
  return `${s})`;
}

/** The text report: per mode, accuracy by length (rows) × depth (columns). */
export function formatPasskeyReport(report: PasskeyReport): string {
  const { model, settings } = report;
  const lines: string[] = [
    `passkey retrieval · ${model.name ?? model.path} (${model.arch}, trained at ${model.contextLength} tokens) · ` +
      `${settings.samples} sample(s) per cell · seed ${settings.seed} · greedy, ${settings.maxNewTokens} new tokens`,
  ];
  for (const r of report.modes) {
    lines.push('', `${describeMode(r)}: ${pct(r.accuracy)} (${r.correct}/${r.total}, ${r.seconds.toFixed(1)} s)`);
    const header = ['length', 'tokens', ...settings.depths.map((d) => `depth ${depthLabel(d)}`), 'all'];
    const rows = r.byLength.map((row) => [
      String(row.length),
      String(row.tokens),
      ...settings.depths.map((d) => {
        const c = r.cells.find((x) => x.length === row.length && x.depth === d);
        return c ? pct(c.accuracy) : '-';
      }),
      pct(row.accuracy),
    ]);
    lines.push(formatTable([header, ...rows]));
  }
  return `${lines.join('\n')}\n`;
}

/** Vega-Lite heatmap: depth (x) × length (y), colour = accuracy, one panel per mode, side by side. */
export function passkeyHeatmapSpec(report: PasskeyReport): VegaLiteSpec {
  const panel = (r: PasskeyModeResult): VegaLiteSpec => {
    const described = describeMode(r);
    const cut = described.indexOf(' (');
    return {
      title: { text: described.slice(0, cut), subtitle: described.slice(cut + 2, -1).split('; ') },
      width: 48 * report.settings.depths.length,
      height: 24 * report.settings.lengths.length,
      data: {
        values: r.cells.map((c) => ({
          length: `${c.length} (${c.tokens})`,
          lengthValue: c.length,
          depth: depthLabel(c.depth),
          depthValue: c.depth,
          accuracy: c.accuracy,
          label: `${Math.round(c.accuracy * 100)}%`,
        })),
      },
      encoding: {
        x: { field: 'depth', type: 'ordinal', title: 'key depth', sort: { field: 'depthValue' }, axis: { labelAngle: 0 } },
        y: { field: 'length', type: 'ordinal', title: 'prompt tokens (actual)', sort: { field: 'lengthValue', order: 'descending' } },
      },
      layer: [
        {
          mark: 'rect',
          encoding: {
            color: {
              field: 'accuracy',
              type: 'quantitative',
              title: 'accuracy',
              scale: { domain: [0, 1], scheme: 'redyellowgreen' },
              legend: { format: '.0%' },
            },
          },
        },
        { mark: { type: 'text', fontSize: 10 }, encoding: { text: { field: 'label', type: 'nominal' } } },
      ],
    };
  };
  return {
    $schema: 'https://vega.github.io/vega-lite/v6.json',
    title: {
      text: `Passkey retrieval · ${report.model.name ?? report.model.path} (trained at ${report.model.contextLength} tokens)`,
      subtitle: `${report.settings.samples} sample(s) per cell, greedy; depth = fraction of the filler before the key line`,
    },
    hconcat: report.modes.map(panel),
    resolve: { scale: { color: 'shared' } },
  };
}

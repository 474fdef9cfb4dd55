/**
 * What `lm-infinite ppl` reports: NLL summed per position bucket, the stable JSON document, the
 * text table and the SVG plot (vega-lite, rendered headless).
 */
import { InvalidArgumentError as UsageError } from 'commander';
import type { KvCacheType } from '../session/options';

/** One bucket of positions [start, end) of the stream; end is the stream length for the last one. */
export interface Bucket {
  start: number;
  end: number;
}

/** Per mode and bucket. nll and ppl are null when the bucket holds no scored token. */
export interface BucketResult extends Bucket {
  /** Scored tokens in the bucket. */
  count: number;
  /** Sum of their NLL (nats). */
  sumNll: number;
  /** Mean NLL, nats/token. */
  nll: number | null;
  /** exp(nll). */
  ppl: number | null;
}

/** One attention mode's pass over the stream. */
export interface ModeResult {
  mode: 'lambda' | 'vanilla';
  /** Λ settings, or 'vanilla'. */
  attention: { nGlobal: number; nLocal: number; limitDistance: number } | 'vanilla';
  kvType: KvCacheType;
  /** Tokens of the stream evaluated (BOS included): vanilla stops at --vanilla-max. */
  tokens: number;
  /** Tokens scored: tokens - 1 (the first token has no prediction). */
  scored: number;
  /** Mean NLL over all scored tokens (nats/token), and exp of it. */
  nll: number;
  ppl: number;
  /** K/V memory of the session, allocated at creation and fixed. */
  kvBytes: number;
  /** Process resident set size after the first and after the last scored chunk. */
  rssBytes: { first: number; last: number };
  seconds: number;
  tokensPerSecond: number;
  buckets: BucketResult[];
}

/**
 * The `--json` document (version 1). Positions count from 0 at the stream's first token (BOS when
 * the model adds one); the token at position p is scored from the tokens before it, so position 0
 * is never scored.
 */
export interface PplReport {
  version: 1;
  /** The model and text files as given. */
  model: string;
  text: string;
  /** Stream length in tokens (BOS included), after --max-tokens. */
  tokens: number;
  /** The buckets (the same for every mode). */
  buckets: Bucket[];
  modes: ModeResult[];
  /** Peak resident set size of the process. */
  peakRssBytes: number;
}

/** `--buckets 0,512,1k,4k`: strictly increasing bucket starts (integers >= 0, k = ×1024). */
export function parseBucketStarts(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  const starts = parts.map((p) => {
    const m = /^(\d+)(k?)$/i.exec(p);
    const n = m ? Number(m[1]) * (m[2] ? 1024 : 1) : NaN;
    if (!Number.isSafeInteger(n)) throw new UsageError(`"${p}" is not an integer >= 0`);
    return n;
  });
  if (starts.length === 0) throw new UsageError('expected comma-separated bucket starts, e.g. 0,512,1k,4k');
  for (let k = 1; k < starts.length; k++) if (starts[k] <= starts[k - 1]) throw new UsageError('bucket starts must increase');
  return starts;
}

/** Powers of two from `first`: 0, first, 2·first, 4·first, … below `length`. */
export function powerOfTwoStarts(length: number, first = 512): number[] {
  const starts = [0];
  for (let s = first; s < length; s *= 2) starts.push(s);
  return starts;
}

/** Buckets from their starts, for a stream of `length` tokens: starts at or past the end are dropped. */
export function makeBuckets(starts: readonly number[], length: number): Bucket[] {
  const kept = starts.filter((s) => s < length);
  return kept.map((start, k) => ({ start, end: k + 1 < kept.length ? kept[k + 1] : length }));
}

/** Sums NLL per bucket as scored chunks arrive in position order. */
export class BucketAccumulator {
  private readonly sums: number[];
  private readonly counts: number[];
  private k = 0;
  private total = 0;
  private n = 0;

  constructor(readonly buckets: readonly Bucket[]) {
    this.sums = buckets.map(() => 0);
    this.counts = buckets.map(() => 0);
  }

  /** nll[i] is the NLL of the token at position startPosition + i. */
  add(startPosition: number, nll: ArrayLike<number>): void {
    const b = this.buckets;
    for (let i = 0; i < nll.length; i++) {
      const p = startPosition + i;
      this.total += nll[i];
      this.n++;
      if (b.length === 0 || p < b[0].start) continue;
      while (this.k + 1 < b.length && p >= b[this.k].end) this.k++;
      if (p >= b[this.k].end) continue;
      this.sums[this.k] += nll[i];
      this.counts[this.k]++;
    }
  }

  get scored(): number {
    return this.n;
  }

  get meanNll(): number {
    return this.n > 0 ? this.total / this.n : NaN;
  }

  results(): BucketResult[] {
    return this.buckets.map((b, k) => {
      const count = this.counts[k];
      const nll = count > 0 ? this.sums[k] / count : null;
      return { start: b.start, end: b.end, count, sumNll: this.sums[k], nll, ppl: nll === null ? null : Math.exp(nll) };
    });
  }
}

/** 1024 → "1k", 1536 → "1.5k", 393019 → "393019". */
export function positionLabel(n: number): string {
  if (n >= 1024 && n % 512 === 0) return `${n / 1024}k`;
  return String(n);
}

function pad(s: string, width: number, left = false): string {
  return left ? s.padEnd(width) : s.padStart(width);
}

const fixed = (v: number | null, digits: number) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits));

/** The human-readable table: one row per bucket, NLL and perplexity per mode, then totals and costs. */
export function formatTable(report: PplReport): string {
  const rows: string[][] = [];
  const head = ['positions', 'tokens', ...report.modes.flatMap((m) => [`${m.mode} nll`, `${m.mode} ppl`])];
  report.buckets.forEach((b, k) => {
    const count = Math.max(...report.modes.map((m) => m.buckets[k].count));
    rows.push([
      `${positionLabel(b.start)}–${positionLabel(b.end)}`,
      String(count),
      ...report.modes.flatMap((m) => [fixed(m.buckets[k].nll, 4), fixed(m.buckets[k].ppl, 3)]),
    ]);
  });
  rows.push(['all', String(Math.max(...report.modes.map((m) => m.scored))), ...report.modes.flatMap((m) => [fixed(m.nll, 4), fixed(m.ppl, 3)])]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((s, c) => pad(s, widths[c], c === 0)).join('  ');
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  out.push('');
  for (const m of report.modes) {
    const att = m.attention === 'vanilla' ? 'vanilla' : `Λ nGlobal ${m.attention.nGlobal} nLocal ${m.attention.nLocal} limitDistance ${m.attention.limitDistance}`;
    out.push(
      `${m.mode}: ${att}; ${m.tokens} tokens in ${m.seconds.toFixed(1)} s (${m.tokensPerSecond.toFixed(0)} tokens/s); ` +
        `K/V ${m.kvType} ${m.kvBytes} bytes; RSS ${(m.rssBytes.first / 2 ** 20).toFixed(1)} → ${(m.rssBytes.last / 2 ** 20).toFixed(1)} MiB`,
    );
  }
  return `${out.join('\n')}\n`;
}

/** A point of a line chart: NLL of one series in one bucket. */
export interface PlotPoint {
  series: string;
  start: number;
  end: number;
  nll: number;
}

/** The vega-lite spec of NLL against position (log x at the bucket's midpoint), one line per series. */
export function nllPlotSpec(points: PlotPoint[], title: string): Record<string, unknown> {
  const mids = points.map((p) => (p.start + p.end) / 2);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 560,
    height: 320,
    data: { values: points.map((p) => ({ ...p, mid: (p.start + p.end) / 2, bucket: `${positionLabel(p.start)}–${positionLabel(p.end)}` })) },
    mark: { type: 'line', point: true },
    encoding: {
      x: {
        field: 'mid',
        type: 'quantitative',
        scale: { type: 'log', nice: false, ...(mids.length > 0 ? { domain: [Math.min(...mids) / 1.3, Math.max(...mids) * 1.3] } : {}) },
        title: 'position (tokens; bucket midpoint, log scale)',
      },
      y: { field: 'nll', type: 'quantitative', scale: { zero: false }, title: 'NLL (nats/token)' },
      color: { field: 'series', type: 'nominal', title: null, sort: null },
    },
  };
}

/** The plot of a report: one line per mode, buckets without scored tokens left out. */
export function reportPlotPoints(report: PplReport): PlotPoint[] {
  return report.modes.flatMap((m) =>
    m.buckets.filter((b) => b.nll !== null).map((b) => ({ series: m.mode === 'lambda' ? 'Λ (lambda)' : 'vanilla', start: b.start, end: b.end, nll: b.nll! })),
  );
}

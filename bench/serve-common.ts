/**
 * Shared by the serve benchmarks: the fixture model, a server child process (the built CLI, so
 * client and server do not share an event loop), percentiles, and RESULTS.md sections.
 */
import { type ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const repo = path.resolve(__dirname, '..');
export const fixtures = process.env.LMI_FIXTURES ?? path.resolve(repo, '..', 'shared', 'fixtures');
export const defaultModel = path.join(fixtures, 'stories260K', 'stories260K.gguf');

export function arg(name: string, fallback: string): string {
  const k = process.argv.indexOf(`--${name}`);
  return k >= 0 && k + 1 < process.argv.length ? process.argv[k + 1] : fallback;
}

export const flag = (name: string) => process.argv.includes(`--${name}`);

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `lm-infinite serve` from dist/cli.cjs on a free loopback port. */
export async function spawnServer(args: string[]): Promise<ServerProcess> {
  const cli = path.join(repo, 'dist', 'cli.cjs');
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build:ts\` first`);
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--host', '127.0.0.1', ...args], { stdio: ['ignore', 'inherit', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      stderr += d;
      const m = /serving "[^"]*" on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`the server exited (${code}):\n${stderr}`)));
  });
  return {
    url,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** The q-quantile (0..1) of values, nearest rank. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${cpu}, ${os.cpus().length} logical CPUs, Node ${process.version}, load average ${os.loadavg()[0].toFixed(1)} at the start`;
}

/**
 * Replaces (or appends) the section `## <title>` in bench/RESULTS.md, leaving the other sections
 * alone; the section runs to the next `## ` heading.
 */
export function writeResultsSection(title: string, body: string): void {
  const file = path.join(repo, 'bench', 'RESULTS.md');
  const heading = `## ${title}`;
  const section = `${heading}\n\n${body.trim()}\n`;
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmark results\n\nEach section comes from the benchmark named in it; rerun that command to refresh it.\n';
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start < 0) {
    text = `${text.trimEnd()}\n\n${section}`;
  } else {
    let end = lines.findIndex((l, k) => k > start && l.startsWith('## '));
    if (end < 0) end = lines.length;
    text = [...lines.slice(0, start), ...section.split('\n'), ...lines.slice(end)].join('\n').replace(/\n{3,}/g, '\n\n');
  }
  fs.writeFileSync(file, text.endsWith('\n') ? text : `${text}\n`);
}

/**
 * Option parsers shared by the evaluation commands (passkey, bench): commander argParsers that
 * throw commander's InvalidArgumentError, so a bad value ends the command with a message naming
 * the option and a non-zero exit.
 */
import { InvalidArgumentError as CommanderArgumentError } from 'commander';

/** `512`, `4k` (×1024), `1m` (×1024²): a positive integer count of tokens. */
export function parseSize(text: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmM]?)\s*$/.exec(text);
  if (!m) throw new CommanderArgumentError(`expected a token count such as 512, 4k or 1m, got "${text}"`);
  const scale = m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1024 : 1024 * 1024;
  const value = Number(m[1]) * scale;
  if (!Number.isSafeInteger(value) || value < 1) throw new CommanderArgumentError(`expected a positive whole token count, got "${text}"`);
  return value;
}

/** A comma-separated list of sizes (see parseSize). */
export function parseSizeList(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length === 0) throw new CommanderArgumentError('expected a comma-separated list of token counts');
  return parts.map(parseSize);
}

/** An integer parser in [min, max]. */
export function intIn(min: number, max: number = Number.MAX_SAFE_INTEGER): (text: string) => number {
  return (text: string) => {
    const value = Number(text.trim());
    if (text.trim() === '' || !Number.isSafeInteger(value) || value < min || value > max)
      throw new CommanderArgumentError(`expected an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}], got "${text}"`);
    return value;
  };
}

/** A parser for a comma-separated subset of `allowed` (no duplicates, order kept). */
export function choiceList<T extends string>(allowed: readonly T[]): (text: string) => T[] {
  return (text: string) => {
    const parts = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (parts.length === 0) throw new CommanderArgumentError(`expected a comma-separated list of ${allowed.join(', ')}`);
    const out: T[] = [];
    for (const p of parts) {
      if (!(allowed as readonly string[]).includes(p)) throw new CommanderArgumentError(`unknown "${p}" (known: ${allowed.join(', ')})`);
      if (!out.includes(p as T)) out.push(p as T);
    }
    return out;
  };
}

/**
 * `5`: that many depths evenly spread over [0, 1] (a whole number >= 1 is a count); otherwise a list
 * of fractions such as `0,0.5,1.0` (a lone `0` is the fraction 0; write `1.0` for the end alone).
 */
export function parseDepths(text: string): number[] | { count: number } {
  const t = text.trim();
  if (/^[0-9]+$/.test(t) && Number(t) >= 1) {
    const count = Number(t);
    if (count > 1000) throw new CommanderArgumentError(`expected a depth count in [1, 1000] or a list of fractions, got "${text}"`);
    return { count };
  }
  const parts = t.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  const values = parts.map(Number);
  if (parts.length === 0 || values.some((v, i) => !/^[0-9.]+$/.test(parts[i]) || !Number.isFinite(v) || v < 0 || v > 1))
    throw new CommanderArgumentError(`expected a depth count or a comma-separated list of fractions in [0, 1], got "${text}"`);
  return [...new Set(values)];
}

/** Right-aligned text table; the first row is the header. */
export function formatTable(rows: string[][], options: { leftColumns?: number } = {}): string {
  const left = options.leftColumns ?? 0;
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => row.map((cell, i) => (i < left ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ').trimEnd())
    .join('\n');
}

/**
 * What `lm-infinite inspect model.gguf` prints: a header summary, the
 * metadata (long arrays and strings abbreviated), the tensor table and totals —
 * as aligned text, or as stable JSON.
 *
 * JSON form (key order fixed): { format, version, fileSize, alignment,
 * headerByteLength, dataOffset, metadata: { <key>: { type, value } |
 * { type: "array", elementType, length, values, truncated } }, tensors: [{ name,
 * type, typeId, shape, offset, relativeOffset, byteLength, elements }], totals }.
 * 64-bit integers are decimal strings; non-finite floats are the strings "NaN",
 * "Infinity", "-Infinity"; nested arrays are { elementType, length, values, truncated }.
 */
import { InvalidArgumentError } from '../errors';
import { ggmlTypeInfo, tensorElementCount } from './ggml-types';
import { GgufArrayValue, GgufFile, GgufValue, GgufValueType } from './types';
import { valueTypeName } from './value-types';

export interface DescribeOptions {
  json?: boolean;
  /** Array elements shown before "..." (default 3 in text, 8 in JSON; Infinity for all). */
  maxArrayItems?: number;
  /** Characters of a string value shown before it is cut (text only; default 80). */
  maxStringChars?: number;
}

const group = (n: number | bigint): string => {
  const s = String(n);
  const neg = s.startsWith('-');
  const digits = neg ? s.slice(1) : s;
  return (neg ? '-' : '') + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
};

/** Shortest decimal that reads back as the same float32. */
function formatF32(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  for (let p = 1; p <= 9; p++) {
    const s = Number(v.toPrecision(p));
    if (Math.fround(s) === v) return String(s);
  }
  return String(v);
}

function formatNumber(v: number, type: GgufValueType): string {
  return type === GgufValueType.FLOAT32 ? formatF32(v) : String(v);
}

function quoteText(s: string, maxChars: number): string {
  if (s.length <= maxChars) return JSON.stringify(s);
  return `${JSON.stringify(s.slice(0, maxChars))}... (${s.length} chars)`;
}

function arrayItemName(type: GgufValueType, n: number): string {
  const name = valueTypeName(type);
  return type === GgufValueType.STRING || type === GgufValueType.BOOL || type === GgufValueType.ARRAY
    ? `${name}${n === 1 ? '' : 's'}`
    : name;
}

function textValue(type: GgufValueType, v: GgufValue, opts: Required<Omit<DescribeOptions, 'json'>>): string {
  switch (type) {
    case GgufValueType.STRING:
      return quoteText(v as string, opts.maxStringChars);
    case GgufValueType.ARRAY:
      return textArray(v as GgufArrayValue, opts);
    case GgufValueType.BOOL:
      return String(v);
    default:
      return typeof v === 'bigint' ? String(v) : formatNumber(v as number, type);
  }
}

function textArray(a: GgufArrayValue, opts: Required<Omit<DescribeOptions, 'json'>>): string {
  const n = a.values.length;
  const shown = Math.min(n, opts.maxArrayItems);
  const items: string[] = [];
  for (let i = 0; i < shown; i++) {
    items.push(textValue(a.elementType, a.values[i] as GgufValue, { ...opts, maxStringChars: Math.min(opts.maxStringChars, 40) }));
  }
  if (shown < n) items.push('...');
  return `[${n} ${arrayItemName(a.elementType, n)}${n > 0 ? ': ' : ''}${items.join(', ')}${shown < n ? ' ' : ''}]`;
}

function jsonScalar(type: GgufValueType, v: GgufValue): unknown {
  if (typeof v === 'bigint') return String(v);
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  if (type === GgufValueType.FLOAT32 && typeof v === 'number') return Number(formatF32(v));
  return v;
}

function jsonArray(a: GgufArrayValue, max: number): Record<string, unknown> {
  const n = a.values.length;
  const shown = Math.min(n, max);
  const values: unknown[] = [];
  for (let i = 0; i < shown; i++) {
    const v = a.values[i] as GgufValue;
    values.push(a.elementType === GgufValueType.ARRAY ? jsonArray(v as GgufArrayValue, max) : jsonScalar(a.elementType, v));
  }
  return { elementType: valueTypeName(a.elementType), length: n, values, truncated: shown < n };
}

function tensorRows(file: GgufFile) {
  return file.tensors.map((t) => ({
    name: t.name,
    type: ggmlTypeInfo(t.type).name,
    typeId: t.type as number,
    shape: [...t.dims],
    offset: t.offset,
    relativeOffset: t.relativeOffset,
    byteLength: t.byteLength,
    elements: tensorElementCount(t.dims),
  }));
}

function totals(rows: ReturnType<typeof tensorRows>) {
  const byType: Record<string, { count: number; bytes: number }> = {};
  let bytes = 0;
  let elements = 0;
  for (const r of rows) {
    bytes += r.byteLength;
    elements += r.elements;
    const b = (byType[r.type] ??= { count: 0, bytes: 0 });
    b.count++;
    b.bytes += r.byteLength;
  }
  return { tensors: rows.length, elements, bytes, byType };
}

export function describeGguf(file: GgufFile, options: DescribeOptions = {}): string {
  if (typeof file !== 'object' || file === null || !(file.metadata instanceof Map)) {
    throw new InvalidArgumentError('describeGguf expects a GgufFile (from readGguf or parseGguf)');
  }
  const json = options.json ?? false;
  const maxArrayItems = options.maxArrayItems ?? (json ? 8 : 3);
  const maxStringChars = options.maxStringChars ?? 80;
  if (!(maxArrayItems >= 0) || !(maxStringChars >= 0)) {
    throw new InvalidArgumentError('maxArrayItems and maxStringChars must be non-negative');
  }
  const rows = tensorRows(file);
  const sums = totals(rows);

  if (json) {
    const metadata: Record<string, unknown> = {};
    for (const [key, e] of file.metadata) {
      metadata[key] = e.type === GgufValueType.ARRAY
        ? { type: 'array', ...jsonArray(e.value as GgufArrayValue, maxArrayItems) }
        : { type: valueTypeName(e.type), value: jsonScalar(e.type, e.value) };
    }
    return JSON.stringify(
      {
        format: 'gguf',
        version: file.version,
        fileSize: file.fileSize,
        alignment: file.alignment,
        headerByteLength: file.headerByteLength,
        dataOffset: file.dataOffset,
        metadata,
        tensors: rows,
        totals: sums,
      },
      null,
      2,
    );
  }

  const opts = { maxArrayItems, maxStringChars };
  const out: string[] = [];
  out.push(
    `GGUF v${file.version}, ${group(file.fileSize)} bytes, alignment ${file.alignment}, ` +
      `header ${group(file.headerByteLength)} bytes` +
      (rows.length > 0 ? `, tensor data at ${group(file.dataOffset)}` : ''),
  );
  out.push('');
  out.push(`Metadata (${file.metadata.size} ${file.metadata.size === 1 ? 'entry' : 'entries'}):`);
  const keyWidth = Math.min(48, Math.max(0, ...[...file.metadata.keys()].map((k) => k.length)));
  for (const [key, e] of file.metadata) {
    const typeName = e.type === GgufValueType.ARRAY
      ? `${valueTypeName((e.value as GgufArrayValue).elementType)}[]`
      : valueTypeName(e.type);
    out.push(`  ${key.padEnd(keyWidth)}  ${typeName.padEnd(8)}  ${textValue(e.type, e.value, opts)}`);
  }
  out.push('');
  out.push(`Tensors (${rows.length}):`);
  if (rows.length > 0) {
    const cells = rows.map((r) => [r.name, r.type, `[${r.shape.join(', ')}]`, group(r.offset), group(r.byteLength)]);
    const head = ['name', 'type', 'shape', 'offset', 'bytes'];
    const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
    const line = (c: string[]) =>
      `  ${c.map((s, i) => (i >= 3 ? s.padStart(widths[i]) : s.padEnd(widths[i]))).join('  ')}`.trimEnd();
    out.push(line(head));
    for (const c of cells) out.push(line(c));
  }
  out.push('');
  const types = Object.entries(sums.byType)
    .map(([t, s]) => `${t}: ${s.count} (${group(s.bytes)} bytes)`)
    .join(', ');
  out.push(
    `Total: ${rows.length} tensors, ${group(sums.elements)} elements, ${group(sums.bytes)} bytes of tensor data` +
      (types ? `; ${types}` : ''),
  );
  return out.join('\n') + '\n';
}

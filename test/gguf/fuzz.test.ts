/**
 * Fuzzing the reader with mutated real files. Every case must either return a
 * GgufFile whose tensors all lie inside the file (and which re-validates
 * independently), or throw an LmiError of code GGUF_FORMAT or UNSUPPORTED —
 * never another error, never a hang, never a large allocation.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LmiError } from '../../lib/errors';
import {
  GgmlType,
  arrayOf,
  ggufValue as v,
  parseGguf,
  readGguf,
  serializeGguf,
  tensorByteLength,
  type GgufFile,
} from '../../lib/gguf';
import { Field, PASSKEY, STORIES, V1_FILE, VOCAB_FILES, mapFields, readFixture } from './helpers';

const SEED = 0x1f2e3d4c;
const IN_MEMORY_CASES = 10_000;
const FILE_CASES = 300;
const TIME_BUDGET_MS = 60_000;
const MEMORY_BUDGET = 512 * 2 ** 20;
const GC_EVERY = 1000;

/** A full GC, through a gc() exposed at run time (Node's --expose-gc, set from inside). */
const collect: () => void = (() => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  return typeof gc === 'function' ? gc : () => undefined;
})();

/** xorshift32 with a few helpers; deterministic for a given seed. */
class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 1; }
  u32(): number {
    let s = this.s;
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    this.s = s;
    return s;
  }
  int(n: number): number { return Math.floor((this.u32() / 4294967296) * n); }
  chance(p: number): boolean { return this.u32() / 4294967296 < p; }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]; }
  u64(): bigint { return (BigInt(this.u32()) << 32n) | BigInt(this.u32()); }
}

interface Subject {
  name: string;
  bytes: Uint8Array; // working copy, mutated in place and restored after each case
  fields: Field[];
  headerEnd: number;
  weight: number;
}

function syntheticFile(): Uint8Array {
  const data = (type: GgmlType, dims: number[]) => new Uint8Array(tensorByteLength(type, dims)).map((_, i) => i * 7);
  return serializeGguf({
    version: 2,
    alignment: 64,
    metadata: new Map([
      ['general.architecture', v.string('llama')],
      ['u8', v.u8(1)], ['i8', v.i8(-1)], ['u16', v.u16(2)], ['i16', v.i16(-2)], ['i32', v.i32(-3)],
      ['f32', v.f32(1.5)], ['f64', v.f64(2.5)], ['b', v.bool(true)], ['u64', v.u64(5n)], ['i64', v.i64(-5n)],
      ['s', v.string('héllo')], ['tokens', v.strings(['<unk>', '<s>', '</s>', 'a', 'bc', 'é'])],
      ['scores', v.f32s([0, -1, -2, -3, -4, -5])], ['flags', v.bools([true, false])],
      ['big', v.u64s([1n, 2n])],
      ['nested', v.array(arrayOf.arrays([arrayOf.u8s([1, 2, 3]), arrayOf.arrays([arrayOf.strings(['x'])]), arrayOf.i64s([])]))],
    ]),
    tensors: [
      { name: 'token_embd.weight', type: GgmlType.F32, dims: [8, 6], data: data(GgmlType.F32, [8, 6]) },
      { name: 'q4', type: GgmlType.Q4_0, dims: [64, 2], data: data(GgmlType.Q4_0, [64, 2]) },
      { name: 'k', type: GgmlType.Q4_K, dims: [256], data: data(GgmlType.Q4_K, [256]) },
      { name: 'z', type: GgmlType.F16, dims: [0, 3], data: new Uint8Array(0) },
      { name: 'i', type: GgmlType.I8, dims: [3, 1, 1, 2], data: data(GgmlType.I8, [3, 1, 1, 2]) },
    ],
  });
}

function subject(name: string, bytes: Uint8Array, weight: number): Subject {
  const copy = Uint8Array.from(bytes);
  let fields: Field[] = [];
  let headerEnd = Math.min(copy.length, 4096);
  try {
    ({ fields, headerEnd } = mapFields(copy));
  } catch {
    // the v1 file: no field map, only byte-level mutations
  }
  return { name, bytes: copy, fields, headerEnd, weight };
}

const U64_VALUES = [0n, 1n, 2n, 7n, 31n, 32n, 33n, 64n, 255n, 2n ** 16n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n,
  2n ** 40n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 62n, 2n ** 63n, 2n ** 64n - 1n];
const U32_VALUES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 24, 30, 31, 34, 39, 40, 41, 42, 255, 2 ** 16, 2 ** 31, 2 ** 32 - 1];

/** Applies 1–3 mutations in place; returns the view to parse, an undo function and a description. */
function mutate(s: Subject, rng: Rng): { view: Uint8Array; undo: () => void; what: string[] } {
  const b = s.bytes;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const saved: Array<[number, Uint8Array]> = [];
  const save = (at: number, n: number) => { saved.push([at, b.slice(at, at + n)]); };
  const what: string[] = [];
  let end = b.length;
  const headerPos = () => (rng.chance(0.9) ? rng.int(Math.min(b.length, s.headerEnd + 64)) : rng.int(b.length));
  const setU64 = (at: number, x: bigint) => { save(at, 8); dv.setBigUint64(at, BigInt.asUintN(64, x), true); };
  const setU32 = (at: number, x: number) => { save(at, 4); dv.setUint32(at, x >>> 0, true); };

  const n = 1 + (rng.chance(0.3) ? rng.int(3) : 0);
  for (let k = 0; k < n; k++) {
    const op = rng.int(s.fields.length > 0 ? 10 : 5);
    switch (op) {
      case 0: { // bit flips
        const m = 1 + rng.int(8);
        for (let i = 0; i < m; i++) { const at = headerPos(); save(at, 1); b[at] ^= 1 << rng.int(8); }
        what.push(`flip ${m} bits`);
        break;
      }
      case 1: { // byte overwrites
        const m = 1 + rng.int(16);
        for (let i = 0; i < m; i++) {
          const at = headerPos(); save(at, 1);
          b[at] = rng.chance(0.5) ? rng.pick([0, 0xff, 0x7f, 0x80, 0x01]) : rng.int(256);
        }
        what.push(`overwrite ${m} bytes`);
        break;
      }
      case 2: { // a run of bytes
        const at = headerPos(); const len = Math.min(1 + rng.int(64), b.length - at);
        save(at, len); b.fill(rng.pick([0, 0xff, rng.int(256)]), at, at + len);
        what.push(`fill ${len} bytes at ${at}`);
        break;
      }
      case 3: { // truncation
        end = Math.min(end, rng.chance(0.7) ? rng.int(Math.min(b.length, s.headerEnd + 64) + 1) : rng.int(b.length + 1));
        what.push(`truncate to ${end}`);
        break;
      }
      case 4: { // version / magic
        if (rng.chance(0.7)) { setU32(4, rng.pick([0, 1, 2, 3, 4, 0x03000000, 0xffffffff])); what.push('version'); }
        else { save(rng.int(4), 1); b[saved[saved.length - 1][0]] = rng.int(256); what.push('magic'); }
        break;
      }
      case 5: case 6: case 7: { // a length, count or value field set to an interesting value
        const f = rng.pick(s.fields);
        if (f.size === 8) {
          const x = rng.chance(0.8) ? rng.pick(U64_VALUES) : rng.u64();
          const old = dv.getBigUint64(f.offset, true);
          setU64(f.offset, rng.chance(0.2) ? old + BigInt(rng.pick([1, -1, 8, -8, 32])) : x);
          what.push(`${f.kind}@${f.offset} u64`);
        } else if (f.size === 4) {
          setU32(f.offset, rng.chance(0.8) ? rng.pick(U32_VALUES) : rng.u32());
          what.push(`${f.kind}@${f.offset} u32`);
        } else if (f.size > 0) {
          const at = f.offset + rng.int(f.size); save(at, 1); b[at] = rng.int(256);
          what.push(`${f.kind}@${f.offset} byte`);
        }
        break;
      }
      case 8: { // tensor table: garble / shuffle offsets, bogus types, odd dims
        const offs = s.fields.filter((f) => f.kind === 'tensor_offset');
        if (offs.length === 0) { what.push('no tensors'); break; }
        const r = rng.int(4);
        if (r === 0 && offs.length > 1) {
          const a = rng.pick(offs); const c = rng.pick(offs);
          const va = dv.getBigUint64(a.offset, true); const vc = dv.getBigUint64(c.offset, true);
          setU64(a.offset, vc); setU64(c.offset, va);
          what.push('swap tensor offsets');
        } else if (r === 1) {
          const f = rng.pick(offs);
          setU64(f.offset, BigInt(rng.int(s.bytes.length)) * (rng.chance(0.5) ? 32n : 1n));
          what.push('garble tensor offset');
        } else if (r === 2) {
          const f = rng.pick(s.fields.filter((x) => x.kind === 'tensor_type'));
          setU32(f.offset, rng.chance(0.7) ? rng.int(45) : rng.u32());
          what.push('tensor type');
        } else {
          const f = rng.pick(s.fields.filter((x) => x.kind === 'dim' || x.kind === 'n_dims'));
          if (f.kind === 'n_dims') setU32(f.offset, rng.int(7));
          else setU64(f.offset, rng.pick([0n, 1n, 31n, 256n, 2n ** 30n, 2n ** 53n, dv.getBigUint64(f.offset, true) * 2n]));
          what.push(f.kind);
        }
        break;
      }
      case 9: { // copy a chunk of the header over another place
        const len = 1 + rng.int(48);
        const from = rng.int(Math.max(1, Math.min(b.length, s.headerEnd) - len));
        const to = rng.int(Math.max(1, Math.min(b.length, s.headerEnd) - len));
        const chunk = b.slice(from, from + len);
        save(to, chunk.length); b.set(chunk.subarray(0, Math.min(chunk.length, b.length - to)), to);
        what.push(`splice ${len} bytes ${from}->${to}`);
        break;
      }
    }
  }
  const undo = () => { for (let i = saved.length - 1; i >= 0; i--) b.set(saved[i][1], saved[i][0]); };
  return { view: b.subarray(0, end), undo, what };
}

/** Independent re-check of everything a returned GgufFile promises. */
function checkFile(g: GgufFile, size: number): string | undefined {
  if (g.version !== 2 && g.version !== 3) return `version ${g.version}`;
  if (g.fileSize !== size) return 'fileSize';
  if (!(g.alignment > 0 && (g.alignment & (g.alignment - 1)) === 0)) return 'alignment';
  if (g.headerByteLength > size || g.dataOffset < g.headerByteLength || g.dataOffset % g.alignment !== 0) return 'header/data offsets';
  if (g.dataOffset - g.headerByteLength >= g.alignment) return 'data offset not the next aligned position';
  const names = new Set<string>();
  const spans: Array<[number, number]> = [];
  for (const t of g.tensors) {
    if (names.has(t.name)) return `duplicate ${t.name}`;
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > 4 || !t.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) return `dims of ${t.name}`;
    let bytes: number;
    try { bytes = tensorByteLength(t.type, t.dims); } catch (e) { return `size of ${t.name}: ${(e as Error).message}`; }
    if (bytes !== t.byteLength) return `byteLength of ${t.name}`;
    if (t.offset !== g.dataOffset + t.relativeOffset || t.relativeOffset % g.alignment !== 0) return `offset of ${t.name}`;
    if (t.offset < g.dataOffset || t.offset + t.byteLength > size) return `${t.name} outside the file`;
    if (t.byteLength > 0) spans.push([t.offset, t.offset + t.byteLength]);
  }
  spans.sort((a, c) => a[0] - c[0]);
  for (let i = 1; i < spans.length; i++) if (spans[i][0] < spans[i - 1][1]) return 'overlap';
  return undefined;
}

function outcome(run: () => GgufFile, size: number): { ok: boolean; code?: string; message?: string; file?: GgufFile; bad?: string } {
  try {
    const file = run();
    const bad = checkFile(file, size);
    return bad ? { ok: false, bad: `invalid result: ${bad}` } : { ok: true, file };
  } catch (e) {
    if (e instanceof LmiError && (e.code === 'GGUF_FORMAT' || e.code === 'UNSUPPORTED') && e.message.length > 0) {
      return { ok: false, code: e.code, message: e.message };
    }
    return { ok: false, bad: `threw ${(e as Error)?.name}: ${(e as Error)?.message}\n${(e as Error)?.stack}` };
  }
}

const subjects: Subject[] = [
  subject('synthetic', syntheticFile(), 40),
  subject('stories260K', readFixture(STORIES), 25),
  subject('passkey-tiny', readFixture(PASSKEY), 16),
  subject('vocab-llama-spm', readFixture(VOCAB_FILES[6]), 8),
  subject('vocab-bert-bge', readFixture(VOCAB_FILES[0]), 4),
  subject('v1', readFixture(V1_FILE), 6),
  subject('vocab-gpt-2', readFixture(VOCAB_FILES[4]), 1),
];
const totalWeight = subjects.reduce((a, s) => a + s.weight, 0);
function pickSubject(rng: Rng): Subject {
  let r = rng.int(totalWeight);
  for (const s of subjects) { if ((r -= s.weight) < 0) return s; }
  return subjects[0];
}

describe('GGUF reader fuzz', () => {
  test('the unmutated subjects parse (or are refused as v1)', () => {
    for (const s of subjects) {
      const r = outcome(() => parseGguf(s.bytes), s.bytes.length);
      if (s.name === 'v1') expect(r.code).toBe('UNSUPPORTED');
      else expect(r).toMatchObject({ ok: true });
    }
    expect(subjects.every((s) => s.name === 'v1' || s.fields.length > 0)).toBe(true);
  });

  test(`${IN_MEMORY_CASES} mutated buffers through parseGguf`, () => {
    const rng = new Rng(SEED);
    const failures: string[] = [];
    const stats = { ok: 0, GGUF_FORMAT: 0, UNSUPPORTED: 0 };
    // Memory: rss after every case against a baseline re-taken after a full GC
    // every GC_EVERY cases (so garbage from earlier cases is not counted, but any
    // large allocation a single case makes is).
    collect();
    let base = process.memoryUsage();
    let peakRss = 0;
    let peakAb = 0;
    let slowest = 0;
    const t0 = performance.now();
    for (let i = 0; i < IN_MEMORY_CASES; i++) {
      const s = pickSubject(rng);
      const m = mutate(s, rng);
      const c0 = performance.now();
      const r = outcome(() => parseGguf(m.view), m.view.length);
      slowest = Math.max(slowest, performance.now() - c0);
      m.undo();
      if (r.bad !== undefined) failures.push(`case ${i} (${s.name}: ${m.what.join(', ')}): ${r.bad}`);
      else if (r.ok) stats.ok++;
      else stats[r.code as 'GGUF_FORMAT' | 'UNSUPPORTED']++;
      peakRss = Math.max(peakRss, process.memoryUsage.rss() - base.rss);
      if (i % GC_EVERY === GC_EVERY - 1) {
        peakAb = Math.max(peakAb, process.memoryUsage().arrayBuffers - base.arrayBuffers);
        collect();
        base = process.memoryUsage();
      }
      if (performance.now() - t0 > TIME_BUDGET_MS) {
        failures.push(`time budget exceeded after ${i} cases`);
        break;
      }
    }
    if (process.env.LMI_FUZZ_VERBOSE) console.log(stats, { peakRss, peakAb, slowest });
    // restoring worked: every subject still parses to its original result
    for (const s of subjects.filter((x) => x.name !== 'v1')) expect(() => parseGguf(s.bytes)).not.toThrow();
    expect(failures.slice(0, 5)).toEqual([]);
    expect(peakRss).toBeLessThan(MEMORY_BUDGET);
    expect(peakAb).toBeLessThan(MEMORY_BUDGET);
    expect(slowest).toBeLessThan(5_000);
    // the mutations reach past the first checks: all three outcomes occur in numbers
    expect(stats.ok).toBeGreaterThan(100);
    expect(stats.GGUF_FORMAT).toBeGreaterThan(1000);
    expect(stats.UNSUPPORTED).toBeGreaterThan(100);
  }, 120_000);

  test(`${FILE_CASES} mutated files through readGguf agree with parseGguf`, async () => {
    const rng = new Rng(SEED ^ 0xa5a5a5a5);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lmi-gguf-fuzz-'));
    const failures: string[] = [];
    const small = subjects.filter((s) => s.name !== 'vocab-gpt-2' && s.name !== 'vocab-bert-bge');
    try {
      const file = path.join(dir, 'case.gguf');
      for (let i = 0; i < FILE_CASES; i++) {
        const s = rng.pick(small);
        const m = mutate(s, rng);
        const bytes = m.view.slice();
        m.undo();
        await writeFile(file, bytes);
        const chunk = s.name === 'synthetic' ? rng.pick([1, 5, 64, 1 << 20]) : rng.pick([4096, 1 << 20]);
        const mem = outcome(() => parseGguf(bytes), bytes.length);
        let disk: ReturnType<typeof outcome>;
        try {
          const g = await readGguf(file, { readChunkBytes: chunk });
          disk = outcome(() => g, bytes.length);
        } catch (e) {
          disk = outcome(() => { throw e; }, bytes.length);
        }
        const where = `case ${i} (${s.name}, chunk ${chunk}: ${m.what.join(', ')})`;
        if (mem.bad !== undefined || disk.bad !== undefined) failures.push(`${where}: ${mem.bad ?? disk.bad}`);
        else if (mem.ok !== disk.ok || mem.code !== disk.code || mem.message !== disk.message) {
          failures.push(`${where}: parseGguf ${mem.code ?? 'ok'} "${mem.message ?? ''}" vs readGguf ${disk.code ?? 'ok'} "${disk.message ?? ''}"`);
        } else if (mem.ok) {
          expect(disk.file).toEqual(mem.file);
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    expect(failures.slice(0, 5)).toEqual([]);
  }, 120_000);
});

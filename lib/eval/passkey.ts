/**
 * Passkey retrieval (LM-Infinite §5, DESIGN.md §4): a key hidden at a chosen depth in a long run of
 * filler, then a question; the model must answer with the key. Accuracy is reported by prompt
 * length × key depth, per attention mode.
 *
 * The prompt (strings exactly as in fixtures/PROVENANCE.md §6, joined with single spaces, BOS first):
 *
 *   PREFIX  filler[0, m)  KEY_LINE(key)  filler[m, n)  QUESTION
 *
 * The filler is the FILL text cut at sentence boundaries: n sentences taken cyclically from FILL's
 * five, starting at sentence `start`. (start, n) are chosen so that the prompt's token count is the
 * closest to the requested length (within 1% for any length >= 300 with the tok512 vocabulary; a
 * whole number of FILL repetitions when that is exact, so 155 + 50·NF reproduces PROVENANCE's
 * prompts). The key line goes after m = round(depth · n) filler sentences: depth 0 puts it right
 * after the prefix, depth 1 right before the question.
 *
 * Sampling: the depths are a fixed, evenly spread grid (no random depths, so no generator artefacts
 * such as the alternating low bits of PROVENANCE's LCG); each (length, depth) cell gets `samples`
 * keys drawn uniformly from [10000, 99999] by the seeded sfc32 generator of lib/sampling/prng.ts.
 * The same plan (same keys) is run for every mode.
 *
 * Scoring: greedy decoding of at most `maxNewTokens` (8) tokens; the answer is the first run of
 * ASCII digits in the generated text; a sample is correct when that run equals the key exactly.
 */
import { InvalidArgumentError } from '../errors';
import type { LambdaAttentionOptions, SessionOptions } from '../session/options';
import type { Session } from '../session/session';
import { Prng } from '../sampling/prng';

export const PASSKEY_PREFIX =
  'There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.';
export const PASSKEY_FILL = 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.';
export const PASSKEY_QUESTION = 'What is the pass key? The pass key is';
/** FILL's sentences, in order: the units the filler is cut into. */
export const PASSKEY_FILL_SENTENCES: readonly string[] = [
  'The grass is green.',
  'The sky is blue.',
  'The sun is yellow.',
  'Here we go.',
  'There and back again.',
];
export const PASSKEY_KEY_MIN = 10000;
export const PASSKEY_KEY_MAX = 99999;
export const DEFAULT_MAX_NEW_TOKENS = 8;

export function passkeyKeyLine(key: number): string {
  return `The pass key is ${key}. Remember it. ${key} is the pass key.`;
}

/** What prompt building needs of a tokenizer (lib/tokenizer's Tokenizer fits). */
export interface PasskeyTokenizer {
  encode(text: string, options: { addSpecial: false }): number[];
  readonly addBos: boolean;
  readonly bos: number | null;
}

export interface PasskeyPrompt {
  /** Prompt ids, BOS first when the tokenizer adds one. The answer is not included. */
  tokens: Int32Array;
  text: string;
  key: number;
  /** Requested length (tokens) and depth (fraction of the filler before the key line). */
  requestedLength: number;
  depth: number;
  /** Filler sentences in all, and before the key line. */
  fillerSentences: number;
  sentencesBefore: number;
  /** Index of the first token of the key line, and one past its last. */
  keyTokenIndex: number;
  keyTokenEnd: number;
  /** Index of the first filler token (= first token after the prefix). */
  fillerTokenIndex: number;
}

function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new InvalidArgumentError(message);
}

function checkKey(key: number): void {
  check(Number.isInteger(key) && key >= 0, `passkey key must be a non-negative integer, got ${String(key)}`);
}

/** Token cost of each filler sentence as it appears after other text (measured after the prefix). */
function sentenceCosts(tok: PasskeyTokenizer): number[] {
  const base = tok.encode(PASSKEY_PREFIX, { addSpecial: false }).length;
  return PASSKEY_FILL_SENTENCES.map((s) => tok.encode(`${PASSKEY_PREFIX} ${s}`, { addSpecial: false }).length - base);
}

function joinText(before: string[], key: number, after: string[]): string {
  return [PASSKEY_PREFIX, ...before, passkeyKeyLine(key), ...after, PASSKEY_QUESTION].join(' ');
}

/** The smallest prompt (no filler), in tokens. */
export function minimumPasskeyLength(tok: PasskeyTokenizer): number {
  return (tok.addBos && tok.bos !== null ? 1 : 0) + tok.encode(joinText([], PASSKEY_KEY_MAX, []), { addSpecial: false }).length;
}

/** The filler for a length: (start sentence, sentence count) whose predicted prompt length is closest. */
export function chooseFiller(tok: PasskeyTokenizer, length: number): { start: number; count: number; predicted: number } {
  const base = minimumPasskeyLength(tok);
  const costs = sentenceCosts(tok);
  const rep = costs.reduce((a, b) => a + b, 0);
  const S = costs.length;
  const need = length - base;
  let best = { start: 0, count: 0, predicted: base };
  if (need <= 0) return best;
  const reps = Math.floor(need / rep);
  // Every start sentence and a few counts around the estimate; the first (start 0, whole reps) wins ties.
  for (let start = 0; start < S; start++) {
    let sum = reps * rep;
    let count = reps * S;
    const consider = () => {
      if (Math.abs(base + sum - length) < Math.abs(best.predicted - length)) best = { start, count, predicted: base + sum };
    };
    consider();
    for (let extra = 0; extra < 2 * S; extra++) {
      sum += costs[(start + count) % S];
      count++;
      consider();
    }
  }
  return best;
}

/** Builds one prompt. `length` is the wanted prompt size in tokens (BOS included, answer not). */
export function buildPasskeyPrompt(tok: PasskeyTokenizer, options: { length: number; depth: number; key: number }): PasskeyPrompt {
  const { length, depth, key } = options;
  check(Number.isInteger(length) && length >= 1, `passkey length must be a positive integer, got ${String(length)}`);
  check(typeof depth === 'number' && depth >= 0 && depth <= 1, `passkey depth must be in [0, 1], got ${String(depth)}`);
  checkKey(key);
  const minimum = minimumPasskeyLength(tok);
  check(length >= Math.floor(minimum * 0.99), `passkey length ${length} is below the shortest prompt of this tokenizer (${minimum} tokens, no filler)`);

  const { start, count } = chooseFiller(tok, length);
  const S = PASSKEY_FILL_SENTENCES.length;
  const filler = Array.from({ length: count }, (_, i) => PASSKEY_FILL_SENTENCES[(start + i) % S]);
  const m = Math.round(depth * count);
  const before = filler.slice(0, m);
  const after = filler.slice(m);
  const text = joinText(before, key, after);

  const bos = tok.addBos && tok.bos !== null ? [tok.bos] : [];
  const ids = [...bos, ...tok.encode(text, { addSpecial: false })];
  const lead = [PASSKEY_PREFIX, ...before].join(' ');
  const keyTokenIndex = bos.length + tok.encode(lead, { addSpecial: false }).length;
  const keyTokenEnd = bos.length + tok.encode(`${lead} ${passkeyKeyLine(key)}`, { addSpecial: false }).length;
  const fillerTokenIndex = bos.length + tok.encode(PASSKEY_PREFIX, { addSpecial: false }).length;
  return {
    tokens: Int32Array.from(ids),
    text,
    key,
    requestedLength: length,
    depth,
    fillerSentences: count,
    sentencesBefore: m,
    keyTokenIndex,
    keyTokenEnd,
    fillerTokenIndex,
  };
}

/** The first run of ASCII digits in `text`, or null when there is none. */
export function parsePasskeyAnswer(text: string): string | null {
  const match = /[0-9]+/.exec(text);
  return match ? match[0] : null;
}

export function isCorrectAnswer(text: string, key: number): boolean {
  return parsePasskeyAnswer(text) === String(key);
}

// ---------------------------------------------------------------------------------------------
// Plan

/** `n` depths evenly spread over [0, 1]: 0, 1/(n-1), …, 1 (n = 1: the middle, 0.5). */
export function evenDepths(n: number): number[] {
  check(Number.isInteger(n) && n >= 1, `the depth count must be a positive integer, got ${String(n)}`);
  if (n === 1) return [0.5];
  return Array.from({ length: n }, (_, i) => i / (n - 1));
}

export interface PasskeyPlanOptions {
  /** Requested prompt lengths, tokens. */
  lengths: number[];
  /** Key depths, fractions of the filler in [0, 1]. */
  depths: number[];
  /** Samples per (length, depth) cell. */
  samples: number;
  seed: number;
}

export interface PasskeySampleSpec {
  length: number;
  depth: number;
  /** Index of the sample within its cell. */
  index: number;
  key: number;
}

/** Every sample: lengths × depths × samples, keys from sfc32 seeded with `seed`, drawn in that order. */
export function planPasskey(o: PasskeyPlanOptions): PasskeySampleSpec[] {
  check(Array.isArray(o.lengths) && o.lengths.length > 0, 'passkey needs at least one length');
  check(Array.isArray(o.depths) && o.depths.length > 0, 'passkey needs at least one depth');
  for (const l of o.lengths) check(Number.isInteger(l) && l >= 1, `passkey lengths must be positive integers, got ${String(l)}`);
  for (const d of o.depths) check(typeof d === 'number' && d >= 0 && d <= 1, `passkey depths must be in [0, 1], got ${String(d)}`);
  check(Number.isInteger(o.samples) && o.samples >= 1, `passkey samples must be a positive integer, got ${String(o.samples)}`);
  check(Number.isFinite(o.seed), `passkey seed must be a finite number, got ${String(o.seed)}`);
  const rng = new Prng(o.seed);
  const span = PASSKEY_KEY_MAX - PASSKEY_KEY_MIN + 1;
  const plan: PasskeySampleSpec[] = [];
  for (const length of o.lengths)
    for (const depth of o.depths)
      for (let index = 0; index < o.samples; index++) plan.push({ length, depth, index, key: PASSKEY_KEY_MIN + Math.floor(rng.next() * span) });
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Modes

export type PasskeyModeName = 'vanilla' | 'lambda' | 'lambda-topk';
export const PASSKEY_MODES: readonly PasskeyModeName[] = ['vanilla', 'lambda', 'lambda-topk'];

export interface PasskeyMode {
  name: PasskeyModeName;
  /** Λ settings (lambda, lambda-topk); the archive size of top-k is filled in per prompt. */
  lambda?: Omit<LambdaAttentionOptions, 'topK'>;
  topK?: { k?: number; fromLayer?: number; insertAt?: number };
}

/** Session options for one prompt of `total` tokens (prompt + generated). */
export function sessionOptionsFor(mode: PasskeyMode, total: number, extra: { threads?: number; chunkSize?: number } = {}): SessionOptions {
  const common = { ...(extra.threads !== undefined ? { threads: extra.threads } : {}), ...(extra.chunkSize !== undefined ? { chunkSize: extra.chunkSize } : {}) };
  if (mode.name === 'vanilla') return { attention: 'vanilla', maxContext: total, ...common };
  const attention: LambdaAttentionOptions = { ...(mode.lambda ?? {}) };
  if (mode.name === 'lambda-topk') attention.topK = { ...(mode.topK ?? {}), maxArchive: Math.max(1, total) };
  return { attention, ...common };
}

// ---------------------------------------------------------------------------------------------
// Running and reporting

/** What the runner needs of a model (lib/model's Model fits). */
export interface PasskeyHost {
  readonly tokenizer: PasskeyTokenizer;
  createSession(options?: SessionOptions): Pick<Session, 'append' | 'generate' | 'dispose' | 'options'>;
}

export interface PasskeySampleResult {
  length: number;
  depth: number;
  index: number;
  key: number;
  /** Prompt tokens (BOS included). */
  tokens: number;
  keyTokenIndex: number;
  /** Generated text (at most maxNewTokens tokens, greedy). */
  answer: string;
  /** First digit run of the answer, or null. */
  parsed: string | null;
  correct: boolean;
}

export interface PasskeyCell {
  length: number;
  depth: number;
  /** Mean prompt tokens of the cell. */
  tokens: number;
  correct: number;
  total: number;
  accuracy: number;
}

export interface PasskeyLengthRow {
  length: number;
  /** Mean prompt tokens over the row. */
  tokens: number;
  correct: number;
  total: number;
  accuracy: number;
}

export interface PasskeyModeResult {
  mode: PasskeyModeName;
  /** The session options of the mode, for the longest prompt (vanilla maxContext and top-k maxArchive vary per prompt). */
  attention: SessionOptions['attention'];
  /** The resolved attention settings (defaults filled in). */
  resolved: unknown;
  cells: PasskeyCell[];
  byLength: PasskeyLengthRow[];
  correct: number;
  total: number;
  accuracy: number;
  seconds: number;
  samples: PasskeySampleResult[];
}

export interface PasskeyRunOptions {
  maxNewTokens?: number;
  threads?: number;
  chunkSize?: number;
  signal?: AbortSignal;
  /** Called after each sample. */
  onSample?: (mode: PasskeyModeName, result: PasskeySampleResult, done: number, total: number) => void;
}

/** Builds every prompt of the plan once (they do not depend on the mode). */
export function buildPlanPrompts(tok: PasskeyTokenizer, plan: PasskeySampleSpec[]): PasskeyPrompt[] {
  return plan.map((s) => buildPasskeyPrompt(tok, { length: s.length, depth: s.depth, key: s.key }));
}

/** One sample: fresh session, prompt, greedy answer. */
export async function runPasskeySample(
  host: PasskeyHost,
  mode: PasskeyMode,
  prompt: PasskeyPrompt,
  o: PasskeyRunOptions = {},
): Promise<{ answer: string; resolved: unknown }> {
  const maxNew = o.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  const session = host.createSession(sessionOptionsFor(mode, prompt.tokens.length + maxNew, { threads: o.threads, chunkSize: o.chunkSize }));
  try {
    await session.append(prompt.tokens, { signal: o.signal });
    let answer = '';
    for await (const piece of session.generate({ maxTokens: maxNew, temperature: 0, seed: 0, signal: o.signal })) answer += piece.text;
    return { answer, resolved: session.options.attention };
  } finally {
    session.dispose();
  }
}

export async function runPasskeyMode(
  host: PasskeyHost,
  mode: PasskeyMode,
  plan: PasskeySampleSpec[],
  prompts: PasskeyPrompt[],
  o: PasskeyRunOptions = {},
): Promise<PasskeyModeResult> {
  const started = Date.now();
  const samples: PasskeySampleResult[] = [];
  let resolved: unknown = null;
  for (let i = 0; i < plan.length; i++) {
    const spec = plan[i];
    const prompt = prompts[i];
    const r = await runPasskeySample(host, mode, prompt, o);
    resolved = r.resolved;
    const parsed = parsePasskeyAnswer(r.answer);
    const result: PasskeySampleResult = {
      length: spec.length,
      depth: spec.depth,
      index: spec.index,
      key: spec.key,
      tokens: prompt.tokens.length,
      keyTokenIndex: prompt.keyTokenIndex,
      answer: r.answer,
      parsed,
      correct: parsed === String(spec.key),
    };
    samples.push(result);
    o.onSample?.(mode.name, result, i + 1, plan.length);
  }
  const longest = prompts.reduce((m, p) => Math.max(m, p.tokens.length), 0);
  const opts = sessionOptionsFor(mode, longest + (o.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS));
  return { mode: mode.name, attention: opts.attention, resolved, ...summarize(samples), seconds: (Date.now() - started) / 1000, samples };
}

/** Cells (length × depth, in first-seen order), rows by length, and the total. */
export function summarize(samples: PasskeySampleResult[]): Pick<PasskeyModeResult, 'cells' | 'byLength' | 'correct' | 'total' | 'accuracy'> {
  const cells = new Map<string, PasskeyCell & { tokenSum: number }>();
  const rows = new Map<number, PasskeyLengthRow & { tokenSum: number }>();
  for (const s of samples) {
    const key = `${s.length}|${s.depth}`;
    const c = cells.get(key) ?? { length: s.length, depth: s.depth, tokens: 0, tokenSum: 0, correct: 0, total: 0, accuracy: 0 };
    c.total++;
    c.tokenSum += s.tokens;
    if (s.correct) c.correct++;
    cells.set(key, c);
    const r = rows.get(s.length) ?? { length: s.length, tokens: 0, tokenSum: 0, correct: 0, total: 0, accuracy: 0 };
    r.total++;
    r.tokenSum += s.tokens;
    if (s.correct) r.correct++;
    rows.set(s.length, r);
  }
  const finish = <T extends { tokenSum: number; tokens: number; correct: number; total: number; accuracy: number }>(x: T) => {
    const { tokenSum, ...rest } = x;
    return { ...rest, tokens: Math.round(tokenSum / x.total), accuracy: x.correct / x.total };
  };
  const correct = samples.filter((s) => s.correct).length;
  return {
    cells: [...cells.values()].map(finish),
    byLength: [...rows.values()].map(finish),
    correct,
    total: samples.length,
    accuracy: samples.length ? correct / samples.length : 0,
  };
}

// ---------------------------------------------------------------------------------------------
// The report (`lm-infinite passkey --json`)

/**
 * The stable JSON form of a passkey run (schema "lm-infinite/passkey@1"; fields are only ever
 * added). Accuracies are fractions in [0, 1]; lengths are the requested prompt lengths and `tokens`
 * the actual mean prompt size (BOS included, within 1% of the request for lengths >= 300 on the
 * tok512 vocabulary); depths are fractions of the filler placed before the key line.
 *
 * {
 *   "schema": "lm-infinite/passkey@1",
 *   "model": { "path", "name", "arch", "contextLength", "nLayer" },
 *   "settings": { "lengths": [..], "depths": [..], "samples" (per length × depth cell), "seed",
 *                 "maxNewTokens", "threads", "chunkSize", "keyGenerator": "sfc32" },
 *   "modes": [ {
 *     "mode": "vanilla" | "lambda" | "lambda-topk",
 *     "attention": the session's attention option (vanilla: "vanilla"; Λ: { nGlobal?, nLocal?, limitDistance?, topK? }),
 *     "resolved": the same with every default filled in (as the session resolved it),
 *     "accuracy", "correct", "total", "seconds",
 *     "byLength": [ { "length", "tokens", "correct", "total", "accuracy" } ],
 *     "cells":    [ { "length", "depth", "tokens", "correct", "total", "accuracy" } ],
 *     "samples":  [ { "length", "depth", "index", "key", "tokens", "keyTokenIndex", "answer", "parsed", "correct" } ]
 *   } ]
 * }
 */
export interface PasskeyReport {
  schema: 'lm-infinite/passkey@1';
  model: { path: string; name: string | null; arch: string; contextLength: number; nLayer: number };
  settings: {
    lengths: number[];
    depths: number[];
    samples: number;
    seed: number;
    maxNewTokens: number;
    threads: number;
    chunkSize: number | null;
    keyGenerator: 'sfc32';
  };
  modes: PasskeyModeResult[];
}

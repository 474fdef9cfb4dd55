/**
 * The passkey harness's pure parts (lib/eval/passkey.ts): prompts (length within 1%, the key line
 * at the requested depth, PROVENANCE's whole-repetition prompts reproduced), answer parsing, the
 * sample plan and the summary. Uses passkey-tiny's tokenizer (tok512); no native code.
 */
import { parseGguf } from '../../lib/gguf';
import { Tokenizer } from '../../lib/tokenizer';
import {
  PASSKEY_FILL,
  PASSKEY_PREFIX,
  PASSKEY_QUESTION,
  buildPasskeyPrompt,
  evenDepths,
  isCorrectAnswer,
  minimumPasskeyLength,
  parsePasskeyAnswer,
  passkeyKeyLine,
  planPasskey,
  sessionOptionsFor,
  summarize,
  type PasskeySampleResult,
} from '../../lib/eval/passkey';
import { PASSKEY, readFixture } from '../gguf/helpers';

let tok: Tokenizer;
beforeAll(() => {
  tok = Tokenizer.fromGgufMetadata(parseGguf(readFixture(PASSKEY)).metadata);
});

const encode = (s: string) => tok.encode(s, { addSpecial: false });

describe('passkey prompts', () => {
  test('the pieces take the token counts PROVENANCE §6 gives', () => {
    expect(encode(PASSKEY_PREFIX)).toHaveLength(85);
    expect(encode(PASSKEY_FILL)).toHaveLength(50);
    expect(encode(passkeyKeyLine(12345))).toHaveLength(44);
    expect(encode(PASSKEY_QUESTION)).toHaveLength(25);
    expect(minimumPasskeyLength(tok)).toBe(155);
  });

  test('155 + 50·NF tokens gives NF whole FILL repetitions, exactly the PROVENANCE prompt', () => {
    for (const nf of [0, 1, 2, 7]) {
      const depthReps = Math.floor(nf / 2);
      const p = buildPasskeyPrompt(tok, { length: 155 + 50 * nf, depth: nf === 0 ? 0 : depthReps / nf, key: 54321 });
      const fills = Array.from({ length: nf }, () => PASSKEY_FILL);
      const text = [PASSKEY_PREFIX, ...fills.slice(0, depthReps), passkeyKeyLine(54321), ...fills.slice(depthReps), PASSKEY_QUESTION].join(' ');
      expect(p.text).toBe(text);
      expect(p.tokens.length).toBe(155 + 50 * nf);
      expect(Array.from(p.tokens)).toEqual([tok.bos, ...encode(text)]);
    }
  });

  test.each([300, 512, 700, 1000, 1024, 1500, 2048, 3000, 4096, 8192, 16384])('length %i is met within 1%', (length) => {
    for (const depth of [0, 0.5, 1]) {
      const p = buildPasskeyPrompt(tok, { length, depth, key: 98765 });
      expect(Math.abs(p.tokens.length - length)).toBeLessThanOrEqual(0.01 * length);
    }
  });

  test('the key line sits at the requested depth (token index)', () => {
    const length = 2048;
    for (const depth of [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1]) {
      const key = 10000 + Math.round(depth * 89999);
      const p = buildPasskeyPrompt(tok, { length, depth, key });
      const line = encode(passkeyKeyLine(key));
      // the key line's tokens are where keyTokenIndex says
      expect(p.keyTokenEnd - p.keyTokenIndex).toBe(line.length);
      expect(Array.from(p.tokens.slice(p.keyTokenIndex, p.keyTokenEnd))).toEqual(line);
      // and that index is the requested fraction of the filler, to within one sentence (<= 12 tokens)
      const fillerTokens = p.tokens.length - p.fillerTokenIndex - line.length - encode(PASSKEY_QUESTION).length;
      const expected = p.fillerTokenIndex + depth * fillerTokens;
      expect(Math.abs(p.keyTokenIndex - expected)).toBeLessThanOrEqual(12);
      expect(p.fillerTokenIndex).toBe(86); // BOS + prefix
    }
    const first = buildPasskeyPrompt(tok, { length, depth: 0, key: 11111 });
    expect(first.keyTokenIndex).toBe(86);
    const last = buildPasskeyPrompt(tok, { length, depth: 1, key: 11111 });
    expect(last.keyTokenEnd + 25).toBe(last.tokens.length); // then only the question
  });

  test('the prompt ends with the question and holds the key twice', () => {
    const p = buildPasskeyPrompt(tok, { length: 1024, depth: 0.3, key: 24680 });
    expect(p.text.endsWith(PASSKEY_QUESTION)).toBe(true);
    expect(p.text.startsWith(PASSKEY_PREFIX)).toBe(true);
    expect(p.text.split('24680')).toHaveLength(3);
  });

  test('bad requests are refused', () => {
    expect(() => buildPasskeyPrompt(tok, { length: 100, depth: 0, key: 12345 })).toThrow(/shortest prompt/);
    expect(() => buildPasskeyPrompt(tok, { length: 1024, depth: 1.5, key: 12345 })).toThrow(/depth/);
    expect(() => buildPasskeyPrompt(tok, { length: 10.5, depth: 0, key: 12345 })).toThrow(/length/);
  });
});

describe('answer parsing', () => {
  test.each([
    [' 54321. Remember', '54321'],
    ['54321', '54321'],
    [' 5432', '5432'],
    [' 54321 is 12345', '54321'],
    ['is 7 and 54321', '7'],
    [' the What Wh', null],
    ['', null],
    [' 54,321', '54'],
    [' 543210', '543210'],
  ])('%j → %j', (text, parsed) => {
    expect(parsePasskeyAnswer(text)).toBe(parsed);
  });

  test('correct only on the exact key', () => {
    expect(isCorrectAnswer(' 54321.', 54321)).toBe(true);
    expect(isCorrectAnswer('54321', 54321)).toBe(true);
    expect(isCorrectAnswer(' 5432', 54321)).toBe(false); // fewer digits
    expect(isCorrectAnswer(' 543219', 54321)).toBe(false); // more digits
    expect(isCorrectAnswer(' x54321', 54321)).toBe(true); // garbage before the digits
    expect(isCorrectAnswer(' garbage', 54321)).toBe(false);
  });
});

describe('plan', () => {
  test('evenDepths', () => {
    expect(evenDepths(1)).toEqual([0.5]);
    expect(evenDepths(2)).toEqual([0, 1]);
    expect(evenDepths(5)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(() => evenDepths(0)).toThrow();
  });

  test('lengths × depths × samples, seeded, keys in [10000, 99999]', () => {
    const o = { lengths: [512, 1024], depths: [0, 0.5, 1], samples: 4, seed: 7 };
    const plan = planPasskey(o);
    expect(plan).toHaveLength(24);
    expect(plan.slice(0, 4).every((s) => s.length === 512 && s.depth === 0)).toBe(true);
    expect(plan.map((s) => s.index).slice(0, 5)).toEqual([0, 1, 2, 3, 0]);
    for (const s of plan) expect(s.key >= 10000 && s.key <= 99999 && Number.isInteger(s.key)).toBe(true);
    expect(planPasskey(o)).toEqual(plan);
    expect(planPasskey({ ...o, seed: 8 }).map((s) => s.key)).not.toEqual(plan.map((s) => s.key));
    // both parities and a spread of keys (no alternating-low-bit pattern)
    const big = planPasskey({ lengths: [512], depths: [0], samples: 200, seed: 1 });
    const odd = big.filter((s) => s.key % 2 === 1).length;
    expect(odd).toBeGreaterThan(70);
    expect(odd).toBeLessThan(130);
    expect(new Set(big.map((s) => s.key % 2)).size).toBe(2);
  });

  test('bad plans are refused', () => {
    expect(() => planPasskey({ lengths: [], depths: [0], samples: 1, seed: 1 })).toThrow(/length/);
    expect(() => planPasskey({ lengths: [512], depths: [2], samples: 1, seed: 1 })).toThrow(/depth/);
    expect(() => planPasskey({ lengths: [512], depths: [0], samples: 0, seed: 1 })).toThrow(/samples/);
  });
});

describe('session options and summary', () => {
  test('each mode gets its attention options, sized for the prompt', () => {
    expect(sessionOptionsFor({ name: 'vanilla' }, 520)).toEqual({ attention: 'vanilla', maxContext: 520 });
    expect(sessionOptionsFor({ name: 'lambda', lambda: { nLocal: 128 } }, 520, { threads: 2 })).toEqual({ attention: { nLocal: 128 }, threads: 2 });
    expect(sessionOptionsFor({ name: 'lambda-topk', lambda: { nGlobal: 4 }, topK: { k: 3, fromLayer: 1 } }, 520)).toEqual({
      attention: { nGlobal: 4, topK: { k: 3, fromLayer: 1, maxArchive: 520 } },
    });
  });

  test('cells, rows by length and the total', () => {
    const sample = (length: number, depth: number, correct: boolean, tokens = length): PasskeySampleResult => ({
      length, depth, index: 0, key: 12345, tokens, keyTokenIndex: 86, answer: '', parsed: null, correct,
    });
    const s = summarize([sample(512, 0, true, 510), sample(512, 0, false, 514), sample(512, 1, true), sample(1024, 0, false)]);
    expect(s.total).toBe(4);
    expect(s.correct).toBe(2);
    expect(s.accuracy).toBe(0.5);
    expect(s.cells).toEqual([
      { length: 512, depth: 0, tokens: 512, correct: 1, total: 2, accuracy: 0.5 },
      { length: 512, depth: 1, tokens: 512, correct: 1, total: 1, accuracy: 1 },
      { length: 1024, depth: 0, tokens: 1024, correct: 0, total: 1, accuracy: 0 },
    ]);
    expect(s.byLength).toEqual([
      { length: 512, tokens: 512, correct: 2, total: 3, accuracy: 2 / 3 },
      { length: 1024, tokens: 1024, correct: 0, total: 1, accuracy: 0 },
    ]);
  });
});

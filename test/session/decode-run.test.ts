/**
 * Decode runs (several tokens per native call, sampled by the native copy of the sampler) against
 * the reference path: one eval per token with lib/sampling's TypeScript sampler (tokensPerCall 1).
 * Same tokens, same text, same end reason, and the same stream afterwards (scored and generated
 * from), however the consumer leaves, including when it leaves in the middle of a run, where the
 * run's later steps are taken back from a ring that has already overwritten older keys.
 * stories260K fixture (PROVENANCE.md §1).
 */
import { AbortError, DisposedError, InvalidArgumentError } from '../../lib/errors';
import { loadModel, type Model } from '../../lib/model';
import type { GenerateOptions, SessionOptions } from '../../lib/session';
import { stories260K } from '../model/fixtures';

let model: Model;

beforeAll(async () => {
  model = await loadModel(stories260K(), { threads: 1 });
});

afterAll(async () => {
  await model?.dispose();
});

/** A small ring (nLocal 24) so that a run of up to 64 steps overwrites keys its own stream still had. */
const RING: SessionOptions = { attention: { nGlobal: 4, nLocal: 24 } };
const VANILLA: SessionOptions = { attention: 'vanilla' };

interface Outcome {
  tokens: number[];
  text: string;
  end: string;
  /** What the stream holds afterwards: its position, the NLL of a probe, and a greedy continuation. */
  position: number;
  probeNll: number;
  next: number[];
}

/**
 * Generates from "Once upon a time" with `options`, leaving after `leaveAfter` pieces when given;
 * `during` runs after every piece. Then probes the stream.
 */
async function outcome(
  session: SessionOptions,
  options: GenerateOptions,
  leaveAfter = Infinity,
  during?: (pieces: number) => void,
): Promise<Outcome> {
  const s = model.createSession(session);
  try {
    await s.append('Once upon a time');
    const tokens: number[] = [];
    let text = '';
    let end = 'left';
    try {
      const it = s.generate(options);
      for (;;) {
        const r = await it.next();
        if (r.done) {
          end = `${r.value.reason}:${r.value.tokens}`;
          break;
        }
        tokens.push(r.value.token);
        text += r.value.text;
        during?.(tokens.length);
        if (tokens.length >= leaveAfter) {
          await it.return(undefined as never);
          break;
        }
      }
    } catch (err) {
      end = `${(err as Error).name}: ${(err as Error).message}`;
    }
    const position = s.position;
    const probe = await s.score(' and the dog ran home.');
    const next: number[] = [];
    for await (const p of s.generate({ maxTokens: 12, temperature: 0, tokensPerCall: 1 })) next.push(p.token);
    return { tokens, text, end, position, probeNll: probe.totalNll, next };
  } finally {
    s.dispose();
  }
}

const SAMPLERS: [string, GenerateOptions][] = [
  ['greedy', { temperature: 0 }],
  ['defaults', { seed: 1 }],
  ['top-p only, hot', { temperature: 1.3, topK: 0, topP: 0.9, minP: 0, seed: 7 }],
  ['penalties + top-k + min-p', { temperature: 0.7, topK: 5, topP: 1, minP: 0.1, repeatPenalty: 1.3, presencePenalty: 0.2, frequencyPenalty: 0.1, penaltyLastN: 32, seed: 3 }],
  ['logit bias, plain softmax', { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 11, logitBias: { 13: -Infinity, 20: 2.5, 261: -3 } }],
];

describe('decode runs give what one eval per token gives', () => {
  test.each(SAMPLERS)('%s: same tokens, text and stream (Λ ring of 24 and vanilla; 64, 5 and 1 tokens per call)', async (_, sampling) => {
    for (const session of [RING, VANILLA]) {
      const reference = await outcome(session, { ...sampling, maxTokens: 150, tokensPerCall: 1 });
      expect(reference.tokens.length).toBeGreaterThan(20);
      for (const tokensPerCall of [64, 5]) expect(await outcome(session, { ...sampling, maxTokens: 150, tokensPerCall })).toEqual(reference);
    }
  });

  test('the default is several tokens per call, and the greedy text is still llama.cpp\'s (PROVENANCE §1)', async () => {
    const s = model.createSession();
    await s.append('Once upon a time');
    const evalsBefore = s.stats.evals;
    const callsBefore = s.stats.calls;
    let text = '';
    for await (const p of s.generate({ maxTokens: 32, temperature: 0 })) text += p.text;
    expect(text).toBe(', there was a little girl named Lily. She loved to play outside in the park. One day, she saw');
    // 32 tokens: the first is sampled from the prompt's logits, 31 are evaluated, the last stays pending;
    // the 31 evals take one native call (a 64-step run, returning at the 32nd sampled token).
    expect(s.stats.evals - evalsBefore).toBe(31);
    expect(s.stats.calls - callsBefore).toBe(1);
    const t = model.createSession();
    await t.append('Once upon a time');
    for await (const _ of t.generate({ maxTokens: 32, temperature: 0, tokensPerCall: 1 })) void _;
    expect(t.stats.calls).toBe(t.stats.evals);
    t.dispose();
    s.dispose();
  });

  test.each([1, 2, 5, 23, 40, 64, 70])('a consumer that leaves after %i pieces leaves the same stream', async (k) => {
    for (const session of [RING, VANILLA]) {
      const sampling = { temperature: 0.9, seed: 5 };
      const reference = await outcome(session, { ...sampling, tokensPerCall: 1 }, k);
      expect(reference.tokens).toHaveLength(k);
      expect(await outcome(session, { ...sampling, tokensPerCall: 64 }, k)).toEqual(reference);
    }
  });

  test.each([[['.']], [['the']], [[' he ']], [['\n']], [['Lily', 'park']], [['\ufffd']]])('stop strings %j end at the same token', async (stop) => {
    for (const session of [RING, VANILLA]) {
      const sampling = { temperature: 0.9, seed: 2, stop, maxTokens: 300 };
      const reference = await outcome(session, { ...sampling, tokensPerCall: 1 });
      expect(reference.end).toMatch(/^(stopString|maxTokens)/);
      expect(await outcome(session, { ...sampling, tokensPerCall: 64 })).toEqual(reference);
    }
  });

  test('stop tokens end a run where they end the per-token loop', async () => {
    // The greedy continuation's 6th token ends it.
    const greedy = await outcome(RING, { temperature: 0, maxTokens: 10, tokensPerCall: 1 });
    const stopTokens = [greedy.tokens[5]];
    const reference = await outcome(RING, { temperature: 0, stopTokens, tokensPerCall: 1 });
    expect(reference.end).toBe('stopToken:5');
    expect(await outcome(RING, { temperature: 0, stopTokens, tokensPerCall: 64 })).toEqual(reference);
  });

  test('an abort in the middle of a run ends after the same piece, with the same stream', async () => {
    const run = (tokensPerCall: number) => {
      const controller = new AbortController();
      return outcome(RING, { temperature: 0.8, seed: 4, signal: controller.signal, tokensPerCall }, Infinity, (n) => {
        if (n === 30) controller.abort();
      });
    };
    const reference = await run(1);
    expect(reference.end).toMatch(/^AbortError/);
    expect(reference.tokens).toHaveLength(30);
    expect(await run(64)).toEqual(reference);
  });

  test('a vanilla session that fills its maxContext inside a run stops at the same token with the same error', async () => {
    const session: SessionOptions = { attention: 'vanilla', maxContext: 40 };
    const reference = await outcome(session, { temperature: 0.8, seed: 8, tokensPerCall: 1 }).catch((e: Error) => e);
    const batched = await outcome(session, { temperature: 0.8, seed: 8, tokensPerCall: 64 }).catch((e: Error) => e);
    // The probe itself does not fit any more either: both fail the same way.
    expect(batched).toEqual(reference);
    const s = model.createSession(session);
    await s.append('Once upon a time');
    const pieces: number[] = [];
    const err = await (async () => {
      for await (const p of s.generate({ temperature: 0.8, seed: 8 })) pieces.push(p.token);
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/maxContext = 40/);
    expect(s.tokenCount).toBe(40);
    s.dispose();
  });

  test('rows the native sampler leaves to TypeScript (+Infinity after a penalty) behave as before', async () => {
    // repeatPenalty 1e-300 turns a recent token's positive logit into +Infinity: greedy picks it, a
    // sampling draw throws InvalidArgumentError from softmax; both must happen as in the TS loop.
    for (const sampling of [{ temperature: 0 }, { temperature: 0.9, seed: 3 }]) {
      const options = { ...sampling, repeatPenalty: 1e-300, maxTokens: 40 };
      const reference = await outcome(RING, { ...options, tokensPerCall: 1 });
      expect(await outcome(RING, { ...options, tokensPerCall: 64 })).toEqual(reference);
    }
  });

  test('disposing the session in the middle of a run: the next piece throws DisposedError, nothing crashes', async () => {
    const s = model.createSession(RING);
    await s.append('Once upon a time');
    const it = s.generate({ temperature: 0.8, seed: 1 });
    for (let k = 0; k < 3; k++) expect((await it.next()).done).toBe(false);
    s.dispose();
    await expect(it.next()).rejects.toBeInstanceOf(DisposedError);
    await expect(s.append('x')).rejects.toBeInstanceOf(DisposedError);
  });

  test('tokensPerCall is checked', () => {
    const s = model.createSession();
    for (const bad of [0, -1, 1.5, 1025, '4', NaN])
      expect(() => s.generate({ tokensPerCall: bad as never })).toThrow(/tokensPerCall must be an integer in \[1, 1024\]/);
    s.dispose();
  });

  test('an abort before the run starts throws AbortError with nothing generated', async () => {
    const controller = new AbortController();
    controller.abort();
    const s = model.createSession();
    await s.append('Once upon a time');
    const before = s.position;
    await expect(s.generate({ signal: controller.signal }).next()).rejects.toBeInstanceOf(AbortError);
    expect(s.position).toBe(before);
    s.dispose();
  });
});

/**
 * The reference forward pass against independent truth on real trained models: llama.cpp
 * (node-llama-cpp 3.21.1, CPU, F32 K/V cache) and the greedy sample recorded in
 * shared/fixtures/PROVENANCE.md §1. Fails (does not skip) when the fixtures are absent.
 */
import { readFileSync } from 'node:fs';
import { parseGguf } from '../../lib/gguf';
import { ReferenceModel } from '../reference/forward';
import { fixturePath, PASSKEY, STORIES } from '../gguf/helpers';
import { runOracle, type OracleJobResult } from '../helpers/llama-oracle';
import { fmt, logProbGap } from './compare';

const PROMPT_IDS = [1, 403, 407, 261, 378]; // BOS + "Once upon a time" (PROVENANCE §1)
const PROVENANCE_GREEDY = [
  432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
  295, 433, 426, 385, 328, 432, 358, 394,
];
const PASSKEY_PROMPT =
  'There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there. ' +
  'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ' +
  'The pass key is 71432. Remember it. 71432 is the pass key. ' +
  'What is the pass key? The pass key is';

function load(rel: string): { path: string; model: ReferenceModel } {
  const path = fixturePath(rel);
  const bytes = new Uint8Array(readFileSync(path));
  return { path, model: new ReferenceModel(parseGguf(bytes), bytes) };
}

const ids = (r: OracleJobResult): number[] => {
  if (r.kind === 'logprobs') throw new Error('expected ids');
  return r.ids;
};

describe('reference forward pass on stories260K and passkey-tiny (vs llama.cpp)', () => {
  const stories = load(STORIES);
  const passkey = load(PASSKEY);
  const text = readFileSync(fixturePath('text/tinystories_val.txt'), 'utf8').slice(0, 1500);
  let storyTokens: number[] = [];
  let storyLogProbs: Float32Array[] = [];
  let llamaGreedy: number[] = [];
  let passkeyTokens: number[] = [];
  let passkeyAnswer: number[] = [];
  let passkeyLogProbs: Float32Array[] = [];

  beforeAll(async () => {
    // Tokenize in one process, score in a second (the token ids are needed for the jobs).
    const [st, pk] = await runOracle([
      { modelPath: stories.path, jobs: [{ kind: 'tokenize', text }] },
      {
        modelPath: passkey.path,
        jobs: [
          { kind: 'tokenize', text: PASSKEY_PROMPT },
          { kind: 'tokenize', text: `${PASSKEY_PROMPT} 71432` },
        ],
      },
    ]);
    if (!st.ok || !pk.ok) throw new Error('llama.cpp refused a fixture model');
    storyTokens = [1, ...ids(st.results[0]).slice(0, 199)];
    passkeyTokens = [1, ...ids(pk.results[0])];
    passkeyAnswer = ids(pk.results[1]).slice(passkeyTokens.length - 1);
    const [s, p] = await runOracle([
      {
        modelPath: stories.path,
        jobs: [
          { kind: 'logprobs', tokens: storyTokens },
          { kind: 'greedy', tokens: PROMPT_IDS, n: PROVENANCE_GREEDY.length },
        ],
      },
      { modelPath: passkey.path, jobs: [{ kind: 'logprobs', tokens: passkeyTokens }] },
    ]);
    if (!s.ok || !p.ok) throw new Error('llama.cpp refused a fixture model');
    const lp = s.results[0];
    const pl = p.results[0];
    if (lp.kind !== 'logprobs' || pl.kind !== 'logprobs') throw new Error('expected log-probabilities');
    storyLogProbs = lp.logprobs;
    passkeyLogProbs = pl.logprobs;
    llamaGreedy = ids(s.results[1]);
  }, 120_000);

  test('stories260K: log-probabilities on 200 positions of TinyStories text agree within 1e-3', () => {
    expect(storyTokens).toHaveLength(200);
    const gap = logProbGap(stories.model.forward(storyTokens), storyLogProbs);
    expect(gap.spread).toBeGreaterThan(10);
    // Measured 1.6e-5 (llama.cpp computes in float32, the reference in double).
    expect({ max: fmt(gap.max), ok: gap.max <= 1e-3 }).toEqual({ max: fmt(gap.max), ok: true });
  });

  test('stories260K: greedy continuation of "Once upon a time" is the PROVENANCE sample', () => {
    expect(stories.model.greedy(PROMPT_IDS, PROVENANCE_GREEDY.length)).toEqual(PROVENANCE_GREEDY);
    expect(llamaGreedy).toEqual(PROVENANCE_GREEDY);
  });

  test('passkey-tiny: log-probabilities on a passkey prompt agree within 1e-3 and the answer is right', () => {
    const logits = passkey.model.forward(passkeyTokens);
    const gap = logProbGap(logits, passkeyLogProbs);
    expect({ max: fmt(gap.max), ok: gap.max <= 1e-3 }).toEqual({ max: fmt(gap.max), ok: true });
    // The answer " 71432" is a space token and five digit tokens (PROVENANCE §6).
    expect(passkeyAnswer).toHaveLength(6);
    expect(passkey.model.greedy(passkeyTokens, 6)).toEqual(passkeyAnswer);
  });
});

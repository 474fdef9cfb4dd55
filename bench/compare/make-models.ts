/**
 * The synthetic ~100M-parameter LLaMA GGUFs of the llama.cpp comparison (bench/compare-llamacpp.mjs),
 * written by our GGUF writer (test/helpers/synthetic-models.ts) with the stories260K vocabulary, in
 * F16, Q8_0 and Q4_0, so both engines load the identical file. Same options, same bytes: a file that
 * exists is reused.
 *
 *   npx sucrase-node bench/compare/make-models.ts [--dir .scratch/bench-models] [--types F16,Q8_0,Q4_0]
 *
 * Prints one JSON line: [{ "type", "path", "params" }].
 */
import * as fs from 'fs';
import * as path from 'path';

import { writeSyntheticModel, syntheticModelName, type SyntheticModelOptions, type SyntheticWeightType } from '../../test/helpers/synthetic-models';

/** dim 1024, 8 layers, 16 query heads over 4 K/V heads (GQA 4, head_dim 64), SwiGLU 2816: 93M parameters. */
export const BENCH_MODEL: Omit<SyntheticModelOptions, 'weightType'> = {
  seed: 100,
  nEmbd: 1024,
  nLayer: 8,
  nHead: 16,
  nHeadKV: 4,
  nFF: 2816,
  nCtx: 2048,
  vocab: 'stories260K',
};

export function parameterCount(o: Omit<SyntheticModelOptions, 'weightType'>, nVocab = 512): number {
  const headDim = o.nEmbd / o.nHead;
  const kv = (o.nHeadKV ?? o.nHead) * headDim;
  const perLayer = 2 * o.nEmbd * o.nEmbd + 2 * o.nEmbd * kv + 3 * o.nEmbd * o.nFF + 2 * o.nEmbd;
  return o.nLayer * perLayer + 2 * nVocab * o.nEmbd + o.nEmbd;
}

function arg(name: string, fallback: string): string {
  const k = process.argv.indexOf(`--${name}`);
  return k >= 0 && k + 1 < process.argv.length ? process.argv[k + 1] : fallback;
}

if (require.main === module) {
  const dir = path.resolve(arg('dir', path.join(__dirname, '..', '..', '.scratch', 'bench-models')));
  const types = arg('types', 'F16,Q8_0,Q4_0').split(',') as SyntheticWeightType[];
  const out = types.map((type) => {
    const o = { ...BENCH_MODEL, weightType: type };
    const file = path.join(dir, syntheticModelName('llama', o));
    if (!fs.existsSync(file)) {
      process.stderr.write(`writing ${file}\n`);
      writeSyntheticModel('llama', o, dir);
    }
    return { type, path: file, params: parameterCount(BENCH_MODEL) };
  });
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

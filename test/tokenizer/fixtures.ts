/** Fixture access for the tokenizer tests. */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { fixturesDir } from '../helpers/fixtures';
import { readGguf } from '../../lib/gguf/reader';
import { Tokenizer } from '../../lib/tokenizer';

export { fixturesDir };

export const vocabPath = (name: string): string => path.join(fixturesDir(), 'llama.cpp-vocab', `ggml-vocab-${name}.gguf`);

export async function loadTokenizer(file: string): Promise<Tokenizer> {
  const gguf = await readGguf(file);
  return Tokenizer.fromGgufMetadata(gguf.metadata);
}

export interface VectorCase {
  input: string;
  expected: number[];
}

/**
 * llama.cpp's test vectors: `X.gguf.inp` holds the inputs, each followed by
 * "\n__ggml_vocab_test__\n"; `X.gguf.out` one line of space-separated ids per input.
 */
export function readVectors(name: string): VectorCase[] {
  const base = vocabPath(name);
  const inp = fs.readFileSync(`${base}.inp`, 'utf8');
  const sep = '\n__ggml_vocab_test__\n';
  const inputs = inp.split(sep);
  if (inputs[inputs.length - 1] !== '') throw new Error(`${base}.inp does not end with the separator`);
  inputs.pop();
  const outLines = fs.readFileSync(`${base}.out`, 'utf8').split('\n');
  if (outLines[outLines.length - 1] === '') outLines.pop();
  if (outLines.length !== inputs.length) {
    throw new Error(`${base}: ${inputs.length} inputs but ${outLines.length} output lines`);
  }
  return inputs.map((input, i) => ({
    input,
    expected: outLines[i].trim() === '' ? [] : outLines[i].trim().split(/\s+/).map(Number),
  }));
}

/**
 * The tokenizer's input: a plain description of a vocabulary, and the one
 * function that fills it from GGUF metadata (`tokenizer.ggml.*` keys).
 *
 * Everything here is data; the defaults llama.cpp applies (BOS id 1 for
 * SentencePiece, add_bos for Llama 3, ...) are resolved in `resolve.ts`.
 */
import { TokenizerError, UnsupportedError } from '../errors';
import { GgufArrayValue, GgufMetadata, GgufMetadataEntry, GgufValueType } from '../gguf/types';

/** `tokenizer.ggml.model`: SentencePiece ('llama'), byte-level BPE ('gpt2'), WordPiece ('bert'). */
export type TokenizerModel = 'llama' | 'gpt2' | 'bert';

export const SUPPORTED_TOKENIZER_MODELS: readonly TokenizerModel[] = ['llama', 'gpt2', 'bert'];

/** GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`). */
export const TokenType = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export interface TokenizerVocab {
  model: TokenizerModel;
  /** Token texts, indexed by id. */
  tokens: string[];
  /** SentencePiece merge scores (higher merges first); 0 when absent. */
  scores?: Float32Array;
  /** One TokenType per token; every token is NORMAL when absent. */
  tokenTypes?: Int32Array;
  /** BPE merges "left right", in rank order (required for 'gpt2'). */
  merges?: string[];
  /** BPE pre-tokenizer name (`tokenizer.ggml.pre`); 'default' when absent. */
  pre?: string;
  /** `general.name`; a few per-model token attributes depend on it (as in llama.cpp). */
  name?: string;
  bosId?: number;
  eosId?: number;
  eotId?: number;
  eomId?: number;
  unkId?: number;
  sepId?: number;
  padId?: number;
  maskId?: number;
  fimPreId?: number;
  fimSufId?: number;
  fimMidId?: number;
  fimPadId?: number;
  fimRepId?: number;
  fimSepId?: number;
  addBos?: boolean;
  addEos?: boolean;
  addSpacePrefix?: boolean;
}

const K = 'tokenizer.ggml.';

function describe(entry: GgufMetadataEntry): string {
  return entry.type === GgufValueType.ARRAY ? 'an array' : `type ${entry.type}`;
}

function str(meta: GgufMetadata, key: string): string | undefined {
  const e = meta.get(key);
  if (e === undefined) return undefined;
  if (typeof e.value !== 'string') throw new TokenizerError(`metadata "${key}" should be a string, but it is ${describe(e)}`);
  return e.value;
}

function bool(meta: GgufMetadata, key: string): boolean | undefined {
  const e = meta.get(key);
  if (e === undefined) return undefined;
  if (typeof e.value !== 'boolean') throw new TokenizerError(`metadata "${key}" should be a bool, but it is ${describe(e)}`);
  return e.value;
}

/** A token id: any integer type. Negative or huge values are kept and rejected (ignored) at resolution, as llama.cpp does. */
function id(meta: GgufMetadata, key: string): number | undefined {
  const e = meta.get(key);
  if (e === undefined) return undefined;
  const v = e.value;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint') return v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : -1;
  throw new TokenizerError(`metadata "${key}" should be a token id, but it is ${describe(e)}`);
}

function array(meta: GgufMetadata, key: string): GgufArrayValue | undefined {
  const e = meta.get(key);
  if (e === undefined) return undefined;
  if (e.type !== GgufValueType.ARRAY || typeof e.value !== 'object' || e.value === null || !('values' in e.value)) {
    throw new TokenizerError(`metadata "${key}" should be an array, but it is ${describe(e)}`);
  }
  return e.value;
}

function stringArray(meta: GgufMetadata, key: string): string[] | undefined {
  const a = array(meta, key);
  if (a === undefined) return undefined;
  const v = a.values;
  if (!Array.isArray(v) || (v.length > 0 && typeof v[0] !== 'string')) {
    throw new TokenizerError(`metadata "${key}" should be an array of strings`);
  }
  return v as string[];
}

function numericArray(meta: GgufMetadata, key: string, n: number): ArrayLike<number> | undefined {
  const a = array(meta, key);
  if (a === undefined) return undefined;
  const v = a.values;
  if (!ArrayBuffer.isView(v) || v instanceof BigInt64Array || v instanceof BigUint64Array) {
    throw new TokenizerError(`metadata "${key}" should be an array of numbers`);
  }
  const nums = v as unknown as ArrayLike<number>;
  if (nums.length !== n) {
    throw new TokenizerError(`metadata "${key}" has ${nums.length} entries, but there are ${n} tokens`);
  }
  return nums;
}

/**
 * Reads the standard tokenizer keys. Throws UnsupportedError for a tokenizer
 * model other than llama / gpt2 / bert, and TokenizerError for missing or
 * inconsistent data.
 */
export function vocabFromGgufMetadata(meta: GgufMetadata): TokenizerVocab {
  const model = str(meta, K + 'model');
  if (model === undefined) throw new TokenizerError(`metadata "${K}model" is missing: the file carries no tokenizer`);
  if (!(SUPPORTED_TOKENIZER_MODELS as readonly string[]).includes(model)) {
    throw new UnsupportedError(
      `tokenizer model '${model}' is not supported (supported: ${SUPPORTED_TOKENIZER_MODELS.join(', ')})`,
    );
  }
  const tokens = stringArray(meta, K + 'tokens');
  if (tokens === undefined) throw new TokenizerError(`metadata "${K}tokens" is missing`);
  const n = tokens.length;

  const scoresRaw = numericArray(meta, K + 'scores', n);
  const typesRaw = numericArray(meta, K + 'token_type', n);
  const vocab: TokenizerVocab = {
    model: model as TokenizerModel,
    tokens,
    scores: scoresRaw === undefined ? undefined : scoresRaw instanceof Float32Array ? scoresRaw : Float32Array.from(scoresRaw),
    tokenTypes: typesRaw === undefined ? undefined : typesRaw instanceof Int32Array ? typesRaw : Int32Array.from(typesRaw),
    merges: stringArray(meta, K + 'merges'),
    pre: str(meta, K + 'pre'),
    name: str(meta, 'general.name'),
    bosId: id(meta, K + 'bos_token_id'),
    eosId: id(meta, K + 'eos_token_id'),
    eotId: id(meta, K + 'eot_token_id'),
    eomId: id(meta, K + 'eom_token_id'),
    unkId: id(meta, K + 'unknown_token_id'),
    // llama.cpp writes "seperator"; accept the correct spelling too.
    sepId: id(meta, K + 'seperator_token_id') ?? id(meta, K + 'separator_token_id'),
    padId: id(meta, K + 'padding_token_id'),
    maskId: id(meta, K + 'mask_token_id'),
    fimPreId: id(meta, K + 'fim_pre_token_id') ?? id(meta, K + 'prefix_token_id'),
    fimSufId: id(meta, K + 'fim_suf_token_id') ?? id(meta, K + 'suffix_token_id'),
    fimMidId: id(meta, K + 'fim_mid_token_id') ?? id(meta, K + 'middle_token_id'),
    fimPadId: id(meta, K + 'fim_pad_token_id'),
    fimRepId: id(meta, K + 'fim_rep_token_id'),
    fimSepId: id(meta, K + 'fim_sep_token_id'),
    addBos: bool(meta, K + 'add_bos_token'),
    addEos: bool(meta, K + 'add_eos_token'),
    addSpacePrefix: bool(meta, K + 'add_space_prefix'),
  };
  if (vocab.model === 'gpt2' && vocab.merges === undefined) {
    throw new TokenizerError(`metadata "${K}merges" is missing (required by a 'gpt2' BPE tokenizer)`);
  }
  return vocab;
}

export { Tokenizer } from './tokenizer';
export type { EncodeOptions, TokenizerDecodeOptions } from './tokenizer';
export { StreamingDecoder } from './streaming';
export type { DecodeOptions } from './streaming';
export { vocabFromGgufMetadata, TokenType, SUPPORTED_TOKENIZER_MODELS } from './vocab';
export type { TokenizerVocab, TokenizerModel } from './vocab';
export { TokenAttr } from './attrs';
export { SUPPORTED_PRE_TOKENIZERS } from './pretokenize';
export type { SpecialIds, TokenizerKind } from './resolve';

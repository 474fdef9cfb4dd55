/** Per-token attribute bits (llama.cpp `llama_token_attr`). */
export const TokenAttr = {
  UNDEFINED: 0,
  UNKNOWN: 1 << 0,
  UNUSED: 1 << 1,
  NORMAL: 1 << 2,
  CONTROL: 1 << 3,
  USER_DEFINED: 1 << 4,
  BYTE: 1 << 5,
  NORMALIZED: 1 << 6,
  /** Whitespace to the left of this special token is dropped when it is split out. */
  LSTRIP: 1 << 7,
  /** Whitespace to the right of this special token is dropped when it is split out. */
  RSTRIP: 1 << 8,
  SINGLE_WORD: 1 << 9,
} as const;

/** The attribute a GGUF token_type value stands for. */
export function attrFromTokenType(type: number): number {
  switch (type) {
    case 1:
      return TokenAttr.NORMAL;
    case 2:
      return TokenAttr.UNKNOWN;
    case 3:
      return TokenAttr.CONTROL;
    case 4:
      return TokenAttr.USER_DEFINED;
    case 5:
      return TokenAttr.UNUSED;
    case 6:
      return TokenAttr.BYTE;
    default:
      return TokenAttr.UNDEFINED;
  }
}

/**
 * The LM-Infinite attention rule (DESIGN.md §1) as one pure function, mirroring
 * native/attention/include/lmi/lambda_rule.h; test/attention/rule.test.ts cross-checks the two.
 */
export type Branch = 'masked' | 'local' | 'global' | 'middle';

export interface LambdaMask {
  /** false: vanilla causal attention (every key j <= i is local). */
  lambda: boolean;
  /** Absolute position of the stream's first token. */
  origin: number;
  nGlobal: number;
  nLocal: number;
  limitDistance: number;
}

/** Which branch a query at absolute position i takes for a key at absolute position j. */
export function classify(i: number, j: number, m: LambdaMask): Branch {
  if (j > i) return 'masked';
  if (!m.lambda) return 'local';
  const d = i - j;
  if (d < m.nLocal) return 'local';
  if (j - m.origin < m.nGlobal) return 'global';
  return 'middle';
}

/** The capped distance of the global branch: L = min(limitDistance, i - origin). */
export function globalDistance(i: number, m: LambdaMask): number {
  return Math.min(m.limitDistance, i - m.origin);
}

/** Sessions: one token stream each, with ring-buffer K/V memory; append, score, generate. */
export {
  Session,
  type AppendResult,
  type GenerateResult,
  type GeneratedPiece,
  type ScoreResult,
  type TextOrTokens,
} from './session';
export {
  KV_CACHE_TYPES,
  MAX_BATCH,
  type GenerateOptions,
  type KvCacheType,
  type LambdaAttentionOptions,
  type OperationOptions,
  type Progress,
  type SessionEvaluator,
  type SessionOptions,
  type TopKAttentionOptions,
} from './options';
export { StopStringFilter } from './stop-strings';

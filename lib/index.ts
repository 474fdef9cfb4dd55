export * from './errors';
export { attention, toNativeAttentionArgs } from './attention/attention';
export type { AttentionInput, LambdaOptions, PositionEncoding } from './attention/attention';
export { classify, globalDistance } from './attention/rule';
export type { Branch, LambdaMask } from './attention/rule';
export { systemInfo } from './system';
export type { NativeSystemInfo as SystemInfo } from './native/types';
export { loadModel, Model, SUPPORTED_ARCHITECTURES } from './model';
export type { GpuOption, LoadModelOptions, ModelInfo } from './model';
export { Session, MAX_BATCH, KV_CACHE_TYPES } from './session';
export type {
  AppendResult,
  GenerateOptions,
  GenerateResult,
  GeneratedPiece,
  KvCacheType,
  LambdaAttentionOptions,
  OperationOptions,
  Progress,
  ScoreResult,
  SessionOptions,
  TextOrTokens,
  TopKAttentionOptions,
} from './session';
export { KvCache } from './cache';
export type { KvCacheOptions, KvCachePlan, KvCacheSize } from './cache';
export * as sampling from './sampling';
export { Sampler } from './sampling';
export type { SamplingOptions } from './sampling';
export { createHandler, BatchScheduler } from './serve';
export type { ServeHandler, ServeOptions, BatchSchedulerOptions } from './serve';

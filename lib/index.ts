export * from './errors';
export { attention, toNativeAttentionArgs } from './attention/attention';
export type { AttentionInput, LambdaOptions, PositionEncoding } from './attention/attention';
export { classify, globalDistance } from './attention/rule';
export type { Branch, LambdaMask } from './attention/rule';
export { systemInfo } from './system';
export type { NativeSystemInfo as SystemInfo } from './native/types';

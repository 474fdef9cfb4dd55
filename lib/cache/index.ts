/** The ring-buffer K/V slot policy: pinned global slots, a ring for the local window, a top-k archive. */
export { KvCache, evalBatch, type KvCacheOptions, type KvCachePlan, type KvCacheSize, type LambdaCacheOptions, type VanillaCacheOptions } from './kv-cache';

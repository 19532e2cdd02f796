export { kvCacheBytesPerBlock, kvCacheBytesPerToken } from './kv-cache-size';
export type { KvCacheShape } from './kv-cache-size';

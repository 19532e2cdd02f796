/** The shape of one model's KV cache, as far as its size is concerned. */
export interface KvCacheShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Bytes per element: 2 for float16 / bfloat16, 4 for float32. */
  dtypeBytes: number;
}

const shapeFields = ['numLayers', 'numKvHeads', 'headDim', 'dtypeBytes'] as const;

/** Bytes one token occupies across all layers: a key and a value vector per KV head per layer. */
export function kvCacheBytesPerToken(shape: KvCacheShape): number {
  for (const name of shapeFields) {
    const value = shape[name];
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
    }
  }
  return 2 * shape.numLayers * shape.numKvHeads * shape.headDim * shape.dtypeBytes;
}

/** Bytes of one block of `blockSize` token slots across all layers. */
export function kvCacheBytesPerBlock(shape: KvCacheShape, blockSize: number): number {
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new RangeError(`block_size must be a positive integer, got ${String(blockSize)}`);
  }
  return kvCacheBytesPerToken(shape) * blockSize;
}

import * as ort from 'onnxruntime-node';

/** The sizes of a runner's pools: its cache and its share of the KV heads. */
export interface KvPoolShape {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

/**
 * The CPU runners' key and value pools, a pair per layer, in the layout the graph's attention reads
 * (blockAttention): `[numKvHeads · numBlocks, blockSize · headDim]` float32, row `head · numBlocks + block` holding
 * one head's keys (or values) of one block's tokens, token after token.
 *
 * ```text
 * slot (block b, offset o), head h  ->  element ((h · numBlocks + b) · blockSize + o) · headDim
 * ```
 *
 * A block's slots for one head are contiguous, so the graph's one Gather per pool copies whole rows and every head
 * of a request's context comes out as one `[keys, headDim]` matrix. The tensors over the pools are made once: each
 * run hands ONNX Runtime the same buffers, no copies.
 */
export class KvPools {
  private readonly keys = new Map<number, Float32Array>();
  private readonly values = new Map<number, Float32Array>();
  private readonly tensors: Record<string, ort.Tensor> = {};

  constructor(
    layers: Iterable<number>,
    private readonly shape: KvPoolShape,
  ) {
    const rows = shape.numKvHeads * shape.numBlocks;
    const rowLength = shape.blockSize * shape.headDim;
    for (const layer of layers) {
      const keys = allocateKvPool(rows * rowLength);
      const values = allocateKvPool(rows * rowLength);
      this.keys.set(layer, keys);
      this.values.set(layer, values);
      this.tensors[`key_pool.${layer}`] = new ort.Tensor('float32', keys, [rows, rowLength]);
      this.tensors[`value_pool.${layer}`] = new ort.Tensor('float32', values, [rows, rowLength]);
    }
  }

  /** `key_pool.L` and `value_pool.L` for every layer held. */
  get feeds(): Readonly<Record<string, ort.Tensor>> {
    return this.tensors;
  }

  keyPool(layer: number): Float32Array {
    return this.keys.get(layer)!;
  }

  valuePool(layer: number): Float32Array {
    return this.values.get(layer)!;
  }

  /**
   * Writes one layer's new keys and values (one row of `numKvHeads · headDim` per token: the graph's `key.L` and
   * `value.L`) into the pools at each token's slot (`block · blockSize + offset`).
   */
  write(layer: number, newKeys: Float32Array, newValues: Float32Array, slotMapping: Int32Array): void {
    const { numBlocks, blockSize, numKvHeads, headDim } = this.shape;
    const keyPool = this.keys.get(layer)!;
    const valuePool = this.values.get(layer)!;
    const width = numKvHeads * headDim;
    for (let token = 0; token < slotMapping.length; token += 1) {
      const slot = slotMapping[token]!;
      const block = Math.floor(slot / blockSize);
      const offset = slot - block * blockSize;
      for (let head = 0; head < numKvHeads; head += 1) {
        const from = token * width + head * headDim;
        const to = ((head * numBlocks + block) * blockSize + offset) * headDim;
        keyPool.set(newKeys.subarray(from, from + headDim), to);
        valuePool.set(newValues.subarray(from, from + headDim), to);
      }
    }
  }
}

/**
 * One layer's key or value pool, written through once now so its pages are resident from the start, as vLLM's
 * zero-filled cache is: RSS after start-up then counts the whole KV cache (the start-up log's memory line), and a
 * machine without the memory fails at start-up rather than once the cache fills. (A fresh Float32Array is zero pages
 * the kernel maps only when first written.)
 */
function allocateKvPool(elements: number): Float32Array {
  const pool = new Float32Array(elements);
  pool.fill(0);
  return pool;
}

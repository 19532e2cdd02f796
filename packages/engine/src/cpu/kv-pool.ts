/**
 * One layer's key or value pool, written through once now so its pages are resident from the start, as vLLM's
 * zero-filled cache is: RSS after start-up then counts the whole KV cache (the start-up log's memory line), and a
 * machine without the memory fails at start-up rather than once the cache fills. (A fresh Float32Array is zero pages
 * the kernel maps only when first written.)
 */
export function allocateKvPool(elements: number): Float32Array {
  const pool = new Float32Array(elements);
  pool.fill(0);
  return pool;
}

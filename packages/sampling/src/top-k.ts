/** Scratch space for {@link selectTopK}, reused between calls; it grows as needed. */
export interface TopKBuffers {
  /** After a call: the selected ids (heap order, then ties), `count` of them. */
  ids: Int32Array;
  heapValues: Float64Array;
  ties: Int32Array;
  tieCount: number;
  pending: Int32Array;
}

const SCAN_CHUNK = 2048;

export function createTopKBuffers(): TopKBuffers {
  return { ids: new Int32Array(64), heapValues: new Float64Array(64), ties: new Int32Array(64), tieCount: 0, pending: new Int32Array(SCAN_CHUNK) };
}

/**
 * The ids of the `k` largest entries of `row` in one pass, with a min-heap of size k that most entries never enter
 * (they lose to the heap's minimum at the first comparison). With `keepTies`, entries equal to the k-th largest are
 * selected too, as top_k keeps them; without, the lower ids win ties. NaN entries rank as -Infinity, and -Infinity
 * entries never count as ties. Writes `buffers.ids[0, count)` (unordered) and returns `count`.
 */
export function selectTopK(row: Float32Array, k: number, buffers: TopKBuffers, keepTies: boolean): number {
  const size = Math.min(k, row.length);
  if (buffers.heapValues.length < size) {
    buffers.ids = new Int32Array(size);
    buffers.heapValues = new Float64Array(size);
  }
  const ids = buffers.ids;
  const values = buffers.heapValues;
  for (let index = 0; index < size; index += 1) {
    const value = row[index]!;
    values[index] = Number.isNaN(value) ? -Infinity : value;
    ids[index] = index;
  }
  for (let index = (size >> 1) - 1; index >= 0; index -= 1) siftDown(values, ids, size, index);

  buffers.tieCount = 0;
  let minimum = size > 0 ? values[0]! : Infinity;
  // Chunk by chunk, a tight loop notes the entries not below the heap's minimum (few, after the first chunk), then
  // they are offered to the heap. Doing the heap work inside the scanning loop made V8 compile it 4× slower.
  const length = row.length;
  const pending = buffers.pending;
  for (let chunkStart = size; chunkStart < length; chunkStart += SCAN_CHUNK) {
    const chunkEnd = Math.min(length, chunkStart + SCAN_CHUNK);
    let pendingCount = 0;
    for (let index = chunkStart; index < chunkEnd; index += 1) {
      if (row[index]! < minimum) continue;
      pending[pendingCount] = index;
      pendingCount += 1;
    }
    for (let position = 0; position < pendingCount; position += 1) {
      const index = pending[position]!;
      const value = row[index]!;
      if (value >= minimum) minimum = offer(buffers, size, index, value, minimum, keepTies);
    }
  }
  const tieCount = buffers.tieCount;
  if (tieCount === 0) return size;
  const count = size + tieCount;
  if (buffers.ids.length < count) {
    const grown = new Int32Array(count);
    grown.set(buffers.ids.subarray(0, size));
    buffers.ids = grown;
    buffers.heapValues = new Float64Array(count);
  }
  buffers.ids.set(buffers.ties.subarray(0, tieCount), size);
  return count;
}

/** An entry not below the heap's minimum: it replaces the minimum, or (equal to it) joins the ties. */
function offer(
  buffers: TopKBuffers,
  size: number,
  index: number,
  value: number,
  minimum: number,
  keepTies: boolean,
): number {
  if (value > minimum) {
    const ids = buffers.ids;
    const values = buffers.heapValues;
    const evicted = ids[0]!;
    values[0] = value;
    ids[0] = index;
    siftDown(values, ids, size, 0);
    const nextMinimum = values[0]!;
    if (keepTies) {
      // The evicted entry ties with the heap's new minimum when that did not rise; otherwise no tie is left.
      if (nextMinimum === minimum && minimum !== -Infinity) pushTie(buffers, evicted);
      else buffers.tieCount = 0;
    }
    return nextMinimum;
  }
  if (keepTies && value === minimum && minimum !== -Infinity) pushTie(buffers, index);
  return minimum;
}

function pushTie(buffers: TopKBuffers, tokenId: number): void {
  const tieCount = buffers.tieCount;
  if (tieCount === buffers.ties.length) {
    const grown = new Int32Array(tieCount * 2);
    grown.set(buffers.ties);
    buffers.ties = grown;
  }
  buffers.ties[tieCount] = tokenId;
  buffers.tieCount = tieCount + 1;
}

/** Min-heap order: the smaller value is on top; among equal values the larger id, so that lower ids are kept. */
function siftDown(values: Float64Array, ids: Int32Array, size: number, start: number): void {
  const value = values[start]!;
  const tokenId = ids[start]!;
  let index = start;
  for (;;) {
    let child = 2 * index + 1;
    if (child >= size) break;
    const right = child + 1;
    if (right < size && below(values[right]!, ids[right]!, values[child]!, ids[child]!)) child = right;
    if (!below(values[child]!, ids[child]!, value, tokenId)) break;
    values[index] = values[child]!;
    ids[index] = ids[child]!;
    index = child;
  }
  values[index] = value;
  ids[index] = tokenId;
}

function below(value: number, tokenId: number, otherValue: number, otherTokenId: number): boolean {
  return value < otherValue || (value === otherValue && tokenId > otherTokenId);
}

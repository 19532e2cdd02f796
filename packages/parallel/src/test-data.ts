// Test helpers shared by the tests and the worker and process entries they start: deterministic contributions, so
// every rank and the test compute the same expected results without sending the data around.
import type { Communicator } from './communicator';

/** A rank's contribution to a collective: `length` values drawn from `seed` and `rank` (small integers as Int32). */
export function contribution(seed: number, rank: number, length: number, elementType: 'float32' | 'int32'): Float32Array | Int32Array {
  let state = (seed * 2654435761 + rank * 40503 + 12345) >>> 0;
  const next = (): number => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
  if (elementType === 'int32') return Int32Array.from({ length }, () => Math.floor(next() * 2 ** 32) | 0);
  return Float32Array.from({ length }, () => (next() - 0.5) * 2 ** Math.floor(next() * 16 - 8));
}

/** The all-reduce of the ranks' contributions, summed in rank order with the element type's arithmetic. */
export function expectedSum(
  seed: number,
  size: number,
  length: number,
  elementType: 'float32' | 'int32',
): Float32Array | Int32Array {
  const sum = contribution(seed, 0, length, elementType);
  for (let rank = 1; rank < size; rank += 1) {
    const part = contribution(seed, rank, length, elementType);
    for (let index = 0; index < length; index += 1) {
      sum[index] = elementType === 'int32' ? (sum[index]! + part[index]!) | 0 : Math.fround(sum[index]! + part[index]!);
    }
  }
  return sum;
}

/** The all-gather of the ranks' contributions. */
export function expectedGather(
  seed: number,
  size: number,
  length: number,
  elementType: 'float32' | 'int32',
): Float32Array | Int32Array {
  const gathered = elementType === 'int32' ? new Int32Array(size * length) : new Float32Array(size * length);
  for (let rank = 0; rank < size; rank += 1) gathered.set(contribution(seed, rank, length, elementType), rank * length);
  return gathered;
}

export interface CollectiveCase {
  seed: number;
  length: number;
  elementType: 'float32' | 'int32';
  root: number;
}

export interface CollectiveResults {
  reduced: Float32Array | Int32Array;
  gathered: Float32Array | Int32Array;
  broadcast: Float32Array | Int32Array;
  /** What this rank received from the previous rank of a ring (its own contribution when alone). */
  received: Float32Array | Int32Array;
}

/** Runs allReduce, allGather, broadcast and a ring of send/recv on `communicator` with this rank's contribution. */
export async function runCollectiveCase(
  communicator: Communicator,
  { seed, length, elementType, root }: CollectiveCase,
): Promise<CollectiveResults> {
  const { rank, size } = communicator;
  const own = contribution(seed, rank, length, elementType);
  const make = (count: number): Float32Array | Int32Array =>
    elementType === 'int32' ? new Int32Array(count) : new Float32Array(count);
  const reduced = own.slice();
  await communicator.allReduce(reduced);
  const gathered = make(size * length);
  await communicator.allGather(own, gathered);
  const broadcast = rank === root ? own.slice() : make(length);
  await communicator.broadcast(broadcast, root);
  let received: Float32Array | Int32Array = own.slice();
  if (size > 1) {
    received = make(length);
    await communicator.send(own, (rank + 1) % size);
    await communicator.recv(received, (rank + size - 1) % size);
  }
  return { reduced, gathered, broadcast, received };
}

/** What {@link runCollectiveCase} must return on `rank` of `size`. */
export function expectedResults(testCase: CollectiveCase, size: number, rank: number): CollectiveResults {
  const { seed, length, elementType, root } = testCase;
  return {
    reduced: expectedSum(seed, size, length, elementType),
    gathered: expectedGather(seed, size, length, elementType),
    broadcast: contribution(seed, root, length, elementType),
    received: contribution(seed, (rank + size - 1) % size, length, elementType),
  };
}

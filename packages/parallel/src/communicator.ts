import { CommunicatorError } from './errors';

/** The element types collectives carry. Int32 sums wrap as 32-bit integers. */
export type CollectiveArray = Float32Array | Int32Array;

/**
 * Collectives and point-to-point messages among the ranks of a group, the same on every transport.
 *
 * Ordering contract (as NCCL's): every operation two ranks take part in together must be issued by both in the
 * same order. Messages between a pair are matched first-in first-out, not by tag; a rank whose order diverged gets a
 * `collective_mismatch` error where the transport can tell (a different operation, element type or length), not
 * silently wrong data. A rank runs one operation at a time: await each before starting the next.
 *
 * Every rank of a group gets bit-identical results: sums add the ranks' contributions in group-rank order.
 */
export interface Communicator {
  /** This rank's index in the group, `0 ≤ rank < size`. */
  readonly rank: number;
  readonly size: number;
  /** Sums `data` element-wise over the group, in place, in group-rank order. */
  allReduce(data: CollectiveArray): Promise<void>;
  /** Concatenates every rank's `input` into `output` (`size × input.length`, rank `r` at `r × input.length`). */
  allGather(input: CollectiveArray, output: CollectiveArray): Promise<void>;
  /** Copies `root`'s `data` into every other rank's `data`. */
  broadcast(data: CollectiveArray, root: number): Promise<void>;
  /** Sends `data` to `destination`; the transport copies it, so `data` may be reused once this resolves. */
  send(data: CollectiveArray, destination: number): Promise<void>;
  /** Receives the next message from `source` into `data`, which must have the sent length and element type. */
  recv(data: CollectiveArray, source: number): Promise<void>;
  /**
   * A communicator over some of this group's ranks (e.g. a stage's tensor-parallel group), numbered in the order
   * given, which must include this rank. It shares this communicator's channels, so the ordering contract spans
   * both. Closing it is a no-op.
   */
  subgroup(ranks: readonly number[]): Communicator;
  /** Releases the transport (sockets, waits); later operations throw `communicator_closed`. */
  close(): Promise<void>;
}

/** The kinds of message a rank sends its peers; a receiver expecting another kind has diverged. */
export const OperationKind = { AllReduce: 1, AllGather: 2, Broadcast: 3, PointToPoint: 4 } as const;
export type OperationKind = (typeof OperationKind)[keyof typeof OperationKind];

export const operationNames: Record<OperationKind, string> = {
  [OperationKind.AllReduce]: 'allReduce',
  [OperationKind.AllGather]: 'allGather',
  [OperationKind.Broadcast]: 'broadcast',
  [OperationKind.PointToPoint]: 'send/recv',
};

export const ElementType = { Float32: 1, Int32: 2 } as const;
export type ElementType = (typeof ElementType)[keyof typeof ElementType];

export function elementTypeOf(rank: number, data: unknown): ElementType {
  if (data instanceof Float32Array) return ElementType.Float32;
  if (data instanceof Int32Array) return ElementType.Int32;
  throw new CommunicatorError('invalid_collective_argument', rank, 'collectives carry a Float32Array or Int32Array');
}

/** Checks a peer's message header against what this rank expected of it. */
export function checkMessage(
  rank: number,
  peer: number,
  expected: { kind: OperationKind; elementType: ElementType; length: number },
  actual: { kind: number; elementType: number; length: number },
): void {
  if (actual.kind !== expected.kind) {
    throw new CommunicatorError(
      'collective_mismatch',
      rank,
      `expected ${operationNames[expected.kind]} from rank ${peer}, which sent ` +
        `${operationNames[actual.kind as OperationKind] ?? `operation ${actual.kind}`}: the ranks' orders diverged`,
    );
  }
  if (actual.elementType !== expected.elementType || actual.length !== expected.length) {
    throw new CommunicatorError(
      'collective_mismatch',
      rank,
      `${operationNames[expected.kind]} with rank ${peer}: expected ${expected.length} ` +
        `${elementTypeName(expected.elementType)} elements, it sent ${actual.length} ` +
        `${elementTypeName(actual.elementType)}`,
    );
  }
}

function elementTypeName(elementType: number): string {
  return elementType === ElementType.Float32 ? 'float32' : elementType === ElementType.Int32 ? 'int32' : 'unknown';
}

export function checkRank(rank: number, size: number, what: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value >= size) {
    throw new CommunicatorError('invalid_collective_argument', rank, `${what} must be a rank in [0, ${size}), got ${value}`);
  }
}

export function checkPeer(rank: number, size: number, what: string, value: number): void {
  checkRank(rank, size, what, value);
  if (value === rank) {
    throw new CommunicatorError('invalid_collective_argument', rank, `${what} must be another rank, got this one`);
  }
}

export function checkGather(rank: number, size: number, input: CollectiveArray, output: CollectiveArray): void {
  if (elementTypeOf(rank, input) !== elementTypeOf(rank, output)) {
    throw new CommunicatorError('invalid_collective_argument', rank, 'allGather input and output element types differ');
  }
  if (output.length !== size * input.length) {
    throw new CommunicatorError(
      'invalid_collective_argument',
      rank,
      `allGather output must hold ${size} × ${input.length} elements, it holds ${output.length}`,
    );
  }
}

/** Validates a subgroup's world ranks and returns this rank's index in it. */
export function subgroupIndex(worldRank: number, worldSize: number, ranks: readonly number[]): number {
  if (ranks.length === 0) {
    throw new CommunicatorError('invalid_collective_argument', worldRank, 'a subgroup needs at least one rank');
  }
  const seen = new Set<number>();
  for (const member of ranks) {
    checkRank(worldRank, worldSize, 'a subgroup member', member);
    if (seen.has(member)) {
      throw new CommunicatorError('invalid_collective_argument', worldRank, `subgroup lists rank ${member} twice`);
    }
    seen.add(member);
  }
  const index = ranks.indexOf(worldRank);
  if (index < 0) {
    throw new CommunicatorError(
      'invalid_collective_argument',
      worldRank,
      `a subgroup must include this rank; [${ranks.join(', ')}] does not`,
    );
  }
  return index;
}

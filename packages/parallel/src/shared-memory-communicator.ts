import { checkMessage, ElementType } from './communicator';
import type { CollectiveArray, Communicator, OperationKind } from './communicator';
import { CommunicatorError, ParallelError } from './errors';
import { GroupCommunicator } from './group-communicator';
import type { Channel } from './group-communicator';

/**
 * The memory ranks on one machine share: made once on the main thread by {@link createSharedMemoryState} and handed
 * to each worker (in `workerData` or a message; the SharedArrayBuffers are shared, not copied).
 *
 * ```
 * data:    | slot of rank 0 | slot of rank 1 | … |       each `slotBytes`, holding the rank's latest message
 * control: | aborted | headers: (kind, type, length) per rank | published[from][to] | consumed[by][from] |
 * ```
 *
 * A rank writes its message into its own slot once and bumps `published[self][peer]` for every peer it is for; a
 * peer reads the slot in place (no copy until its own result) and bumps `consumed[peer][self]`. A rank overwrites its
 * slot only after every peer consumed the previous message, so each pair sees its messages in order.
 */
export interface SharedMemoryState {
  readonly worldSize: number;
  /** The largest message one rank can send, in bytes (a multiple of 64). */
  readonly slotBytes: number;
  readonly control: SharedArrayBuffer;
  readonly data: SharedArrayBuffer;
}

const abortedIndex = 0;
const headersStart = 16;
const headerLength = 4;
/** How long one wait sleeps before it looks at the abort flag again, bounding how late an abort is noticed. */
const waitSliceMs = 50;

/**
 * Allocates the shared state for `worldSize` ranks whose messages are at most `maxMessageBytes` (e.g. the logits of
 * a batch, `maxBatch × vocabularyShardSize × 4`, for the all-gather of lm_head).
 */
export function createSharedMemoryState(options: { worldSize: number; maxMessageBytes: number }): SharedMemoryState {
  const { worldSize, maxMessageBytes } = options;
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new ParallelError('invalid_collective_argument', `worldSize must be a positive integer, got ${worldSize}`);
  }
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1) {
    throw new ParallelError(
      'invalid_collective_argument',
      `maxMessageBytes must be a positive integer, got ${maxMessageBytes}`,
    );
  }
  // Whole cache lines per slot, so two ranks writing their slots never share one.
  const slotBytes = Math.ceil(maxMessageBytes / 64) * 64;
  const controlLength = headersStart + worldSize * headerLength + 2 * worldSize * worldSize;
  return {
    worldSize,
    slotBytes,
    control: new SharedArrayBuffer(controlLength * Int32Array.BYTES_PER_ELEMENT),
    data: new SharedArrayBuffer(slotBytes * worldSize),
  };
}

/**
 * Marks the state aborted: every rank waiting on it (now or later) throws `communicator_aborted` within about
 * 50 ms. The executor calls it when a worker dies, so its peers do not wait forever.
 */
export function abortSharedMemory(state: SharedMemoryState): void {
  const control = new Int32Array(state.control);
  Atomics.store(control, abortedIndex, 1);
  for (let index = headersStart; index < control.length; index += 1) Atomics.notify(control, index);
}

export interface SharedMemoryCommunicatorOptions {
  /** Fail a wait on a peer after this long (default: wait until aborted). */
  timeoutMs?: number;
  /**
   * Checks of a peer's counter before sleeping on it: spinning is faster when the peer is about to arrive (the
   * usual case in lockstep tensor parallelism) but burns a core. Default 2000 (a few microseconds).
   */
  spinIterations?: number;
}

/**
 * The communicator of world rank `rank` over `state`. Create exactly one per rank (its message counters are local),
 * in the thread that uses it; use `subgroup` for a stage's tensor-parallel group.
 */
export function createSharedMemoryCommunicator(
  state: SharedMemoryState,
  rank: number,
  options: SharedMemoryCommunicatorOptions = {},
): Communicator {
  if (!Number.isInteger(rank) || rank < 0 || rank >= state.worldSize) {
    throw new CommunicatorError('invalid_collective_argument', rank, `rank must be in [0, ${state.worldSize})`);
  }
  return GroupCommunicator.world(new SharedMemoryChannel(state, rank, options));
}

type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs?: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };

// ES2024's Atomics.waitAsync: Node 20 has it, the ES2023 library types do not.
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

class SharedMemoryChannel implements Channel {
  readonly size: number;
  private readonly control: Int32Array;
  private readonly publishedStart: number;
  private readonly consumedStart: number;
  /** Messages this rank published to each peer, and consumed from each peer (wrapping int32 counters). */
  private readonly sent: Int32Array;
  private readonly received: Int32Array;
  /** Peers that may still be reading this rank's slot. */
  private readonly unconsumedPeers = new Set<number>();
  private readonly slotFloat32: Float32Array[] = [];
  private readonly slotInt32: Int32Array[] = [];
  private readonly timeoutMs: number;
  private readonly spinIterations: number;
  private closed = false;

  constructor(
    private readonly state: SharedMemoryState,
    readonly rank: number,
    options: SharedMemoryCommunicatorOptions,
  ) {
    this.size = state.worldSize;
    this.control = new Int32Array(state.control);
    this.publishedStart = headersStart + this.size * headerLength;
    this.consumedStart = this.publishedStart + this.size * this.size;
    this.sent = new Int32Array(this.size);
    this.received = new Int32Array(this.size);
    for (let peer = 0; peer < this.size; peer += 1) {
      this.slotFloat32.push(new Float32Array(state.data, peer * state.slotBytes, state.slotBytes / 4));
      this.slotInt32.push(new Int32Array(state.data, peer * state.slotBytes, state.slotBytes / 4));
    }
    this.timeoutMs = options.timeoutMs ?? Number.POSITIVE_INFINITY;
    this.spinIterations = options.spinIterations ?? 2000;
  }

  async publish(kind: OperationKind, data: CollectiveArray, peers: readonly number[]): Promise<void> {
    if (data.byteLength > this.state.slotBytes) {
      throw new CommunicatorError(
        'invalid_collective_argument',
        this.rank,
        `a message of ${data.byteLength} bytes exceeds the shared slot of ${this.state.slotBytes} bytes ` +
          '(createSharedMemoryState maxMessageBytes)',
      );
    }
    for (const peer of this.unconsumedPeers) {
      await this.waitUntil(this.consumedStart + peer * this.size + this.rank, this.sent[peer]!, peer);
    }
    this.unconsumedPeers.clear();
    const header = headersStart + this.rank * headerLength;
    const elementType = data instanceof Int32Array ? ElementType.Int32 : ElementType.Float32;
    this.control[header] = kind;
    this.control[header + 1] = elementType;
    this.control[header + 2] = data.length;
    (elementType === ElementType.Int32 ? this.slotInt32 : this.slotFloat32)[this.rank]!.set(data);
    for (const peer of peers) {
      const count = (this.sent[peer]! + 1) | 0;
      this.sent[peer] = count;
      const index = this.publishedStart + this.rank * this.size + peer;
      // The atomic store orders the header and slot writes above before it for the peer that loads it.
      Atomics.store(this.control, index, count);
      Atomics.notify(this.control, index);
      this.unconsumedPeers.add(peer);
    }
  }

  async receive(
    kind: OperationKind,
    elementType: ElementType,
    length: number,
    peer: number,
  ): Promise<CollectiveArray> {
    const expected = (this.received[peer]! + 1) | 0;
    await this.waitUntil(this.publishedStart + peer * this.size + this.rank, expected, peer);
    const header = headersStart + peer * headerLength;
    checkMessage(this.rank, peer, { kind, elementType, length }, {
      kind: this.control[header]!,
      elementType: this.control[header + 1]!,
      length: this.control[header + 2]!,
    });
    const slot = elementType === ElementType.Int32 ? this.slotInt32[peer]! : this.slotFloat32[peer]!;
    return slot.subarray(0, length);
  }

  release(peer: number): void {
    const count = (this.received[peer]! + 1) | 0;
    this.received[peer] = count;
    const index = this.consumedStart + this.rank * this.size + peer;
    Atomics.store(this.control, index, count);
    Atomics.notify(this.control, index);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Waits until the wrapping counter at `index` reaches `target` (a difference below 2^31 counts as reached). */
  private async waitUntil(index: number, target: number, peer: number): Promise<void> {
    const control = this.control;
    for (let spin = 0; spin < this.spinIterations; spin += 1) {
      if (((Atomics.load(control, index) - target) | 0) >= 0) return;
    }
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      const value = Atomics.load(control, index);
      if (((value - target) | 0) >= 0) return;
      if (Atomics.load(control, abortedIndex) !== 0) {
        throw new CommunicatorError('communicator_aborted', this.rank, `aborted while waiting on rank ${peer}`);
      }
      if (this.closed) throw new CommunicatorError('communicator_closed', this.rank, 'the communicator is closed');
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        throw new CommunicatorError(
          'communicator_timeout',
          this.rank,
          `waited more than ${this.timeoutMs} ms on rank ${peer}`,
        );
      }
      const result = waitAsync(control, index, value, Math.min(remaining, waitSliceMs));
      if (result.async) await result.value;
    }
  }
}

import type { Pull, Push } from 'zeromq';
import { checkMessage, ElementType } from './communicator';
import type { CollectiveArray, Communicator, OperationKind } from './communicator';
import { CommunicatorError } from './errors';
import { GroupCommunicator } from './group-communicator';
import type { Channel } from './group-communicator';

export type ZeroMqCommunicatorOptions = ZeroMqCommonOptions &
  (
    | {
        /**
         * One ZeroMQ endpoint per world rank, the same list on every rank, e.g. `tcp://10.0.0.2:29500`; rank `r`
         * binds `endpoints[r]` and connects to all the others.
         */
        endpoints: readonly string[];
      }
    | {
        /** What this rank binds, typically with a port ZeroMQ picks: `tcp://127.0.0.1:*`. */
        bindAddress: string;
        /**
         * The caller's rendezvous: given the endpoint this rank bound, resolves with every rank's (the same list on
         * every rank, e.g. gathered by a launcher). Binding first avoids guessing free ports.
         */
        exchangeEndpoints: (endpoint: string) => Promise<readonly string[]>;
      }
  );

interface ZeroMqCommonOptions {
  /** This process's world rank. */
  rank: number;
  /** Fail a wait on a peer after this long (default: wait forever; ZeroMQ does not notice a dead peer). */
  timeoutMs?: number;
  /** How long closing waits to deliver messages still queued (ZeroMQ's linger), default 1000 ms. */
  lingerMs?: number;
}

/**
 * A communicator between processes or hosts over ZeroMQ: each rank binds one PULL socket and connects one PUSH
 * socket to every other rank's, so each ordered pair of ranks has its own FIFO pipe. ZeroMQ does the framing,
 * connecting and reconnecting; a message is two frames, a header `[source, kind, elementType, length]` and the
 * payload. Peers may start in any order: messages queue until the connection is up.
 *
 * `zeromq` is loaded on first use, so processes that never communicate across processes do not load its addon.
 */
export async function createZeroMqCommunicator(options: ZeroMqCommunicatorOptions): Promise<Communicator> {
  const { rank } = options;
  const zeromq = await import('zeromq');
  const lingerMs = options.lingerMs ?? 1000;
  const pull = new zeromq.Pull({ linger: 0 });
  let endpoints: readonly string[];
  try {
    if ('endpoints' in options) {
      endpoints = options.endpoints;
      checkWorldRank(rank, endpoints.length);
      await pull.bind(endpoints[rank]!);
    } else {
      await pull.bind(options.bindAddress);
      endpoints = await options.exchangeEndpoints(pull.lastEndpoint!);
      checkWorldRank(rank, endpoints.length);
    }
  } catch (error) {
    pull.close();
    throw error;
  }
  const pushes: (Push | undefined)[] = endpoints.map((endpoint, peer) => {
    if (peer === rank) return undefined;
    // A short reconnect interval: a peer that binds after we connect is picked up in milliseconds, not 100 ms.
    const push = new zeromq.Push({ linger: lingerMs, reconnectInterval: 10 });
    push.connect(endpoint);
    return push;
  });
  return GroupCommunicator.world(new ZeroMqChannel(rank, endpoints.length, pull, pushes, options.timeoutMs));
}

function checkWorldRank(rank: number, worldSize: number): void {
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new CommunicatorError('invalid_collective_argument', rank, `rank must be in [0, ${worldSize})`);
  }
}

interface Incoming {
  kind: number;
  elementType: number;
  length: number;
  payload: Uint8Array;
}

interface Waiter {
  resolve: (message: Incoming) => void;
  reject: (error: unknown) => void;
}

class ZeroMqChannel implements Channel {
  private readonly queues: Incoming[][];
  private readonly waiters: (Waiter | undefined)[];
  private readonly header: Int32Array;
  private closed = false;
  private failure: unknown;
  private readonly receiving: Promise<void>;

  constructor(
    readonly rank: number,
    readonly size: number,
    private readonly pull: Pull,
    private readonly pushes: readonly (Push | undefined)[],
    private readonly timeoutMs: number | undefined,
  ) {
    this.queues = Array.from({ length: size }, () => []);
    this.waiters = new Array<Waiter | undefined>(size);
    this.header = new Int32Array([rank, 0, 0, 0]);
    this.receiving = this.receiveLoop();
  }

  async publish(kind: OperationKind, data: CollectiveArray, peers: readonly number[]): Promise<void> {
    if (this.closed) throw new CommunicatorError('communicator_closed', this.rank, 'the communicator is closed');
    this.header[1] = kind;
    this.header[2] = data instanceof Int32Array ? ElementType.Int32 : ElementType.Float32;
    this.header[3] = data.length;
    // ZeroMQ sends large buffers without copying and reads them later; the caller may overwrite `data` (an in-place
    // all-reduce does) once this resolves, so the payload is a copy. The header is copied for the same reason.
    const payload = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    const header = this.header.slice();
    for (const peer of peers) await this.pushes[peer]!.send([header, payload]);
  }

  async receive(
    kind: OperationKind,
    elementType: ElementType,
    length: number,
    peer: number,
  ): Promise<CollectiveArray> {
    const message = this.queues[peer]!.shift() ?? (await this.nextMessage(peer));
    checkMessage(this.rank, peer, { kind, elementType, length }, message);
    const { payload } = message;
    if (payload.byteLength !== length * 4) {
      throw new CommunicatorError(
        'collective_mismatch',
        this.rank,
        `rank ${peer} announced ${length} elements but sent ${payload.byteLength} bytes`,
      );
    }
    const bytes =
      payload.byteOffset % 4 === 0 ? payload : new Uint8Array(payload); // typed views need 4-byte alignment
    return elementType === ElementType.Int32
      ? new Int32Array(bytes.buffer, bytes.byteOffset, length)
      : new Float32Array(bytes.buffer, bytes.byteOffset, length);
  }

  release(): void {
    // The received buffer belongs to this rank; nothing to hand back.
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const push of this.pushes) push?.close();
    this.pull.close();
    await this.receiving;
    this.failWaiters(new CommunicatorError('communicator_closed', this.rank, 'the communicator is closed'));
  }

  private nextMessage(peer: number): Promise<Incoming> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closed) {
      return Promise.reject(new CommunicatorError('communicator_closed', this.rank, 'the communicator is closed'));
    }
    return new Promise<Incoming>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (this.timeoutMs !== undefined && Number.isFinite(this.timeoutMs)) {
        timer = setTimeout(() => {
          this.waiters[peer] = undefined;
          reject(
            new CommunicatorError('communicator_timeout', this.rank, `waited more than ${this.timeoutMs} ms on rank ${peer}`),
          );
        }, this.timeoutMs);
      }
      this.waiters[peer] = {
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  private async receiveLoop(): Promise<void> {
    while (!this.closed) {
      let frames: Buffer[];
      try {
        frames = await this.pull.receive();
      } catch (error) {
        if (this.closed) return;
        this.failure = new CommunicatorError('communicator_aborted', this.rank, 'receiving failed', { cause: error });
        this.failWaiters(this.failure);
        return;
      }
      const [headerFrame, payload] = frames;
      // A message in another format cannot be attributed to a rank; dropping it leaves the waits to time out.
      if (headerFrame === undefined || payload === undefined || headerFrame.length !== 16) continue;
      const header = new Int32Array(new Uint8Array(headerFrame).buffer);
      const source = header[0]!;
      if (source < 0 || source >= this.size) continue;
      const message = { kind: header[1]!, elementType: header[2]!, length: header[3]!, payload };
      const waiter = this.waiters[source];
      if (waiter !== undefined) {
        this.waiters[source] = undefined;
        waiter.resolve(message);
      } else {
        this.queues[source]!.push(message);
      }
    }
  }

  private failWaiters(error: unknown): void {
    for (let peer = 0; peer < this.size; peer += 1) {
      const waiter = this.waiters[peer];
      this.waiters[peer] = undefined;
      waiter?.reject(error);
    }
  }
}

import {
  checkGather,
  checkPeer,
  checkRank,
  elementTypeOf,
  OperationKind,
  subgroupIndex,
} from './communicator';
import type { CollectiveArray, Communicator, ElementType } from './communicator';
import { CommunicatorError } from './errors';

/**
 * What a transport provides: ordered messages between pairs of world ranks. The collectives above it are the same
 * for every transport, so results (including the summation order) do not depend on the transport.
 */
export interface Channel {
  readonly rank: number;
  readonly size: number;
  /** Makes a copy of `data` available to each of `peers`, in each pair's order. Resolves once `data` is free. */
  publish(kind: OperationKind, data: CollectiveArray, peers: readonly number[]): Promise<void>;
  /**
   * The next message from `peer`, checked against what is expected. The view stays valid until `release(peer)`,
   * which every `receive` must be paired with.
   */
  receive(kind: OperationKind, elementType: ElementType, length: number, peer: number): Promise<CollectiveArray>;
  release(peer: number): void;
  close(): Promise<void>;
}

/** The world-level state a communicator and its subgroups share: the channel and the one-operation-at-a-time flag. */
interface Endpoint {
  channel: Channel;
  busy: boolean;
  closed: boolean;
}

/** Collectives over a group of world ranks (`members`, in group-rank order), on any {@link Channel}. */
export class GroupCommunicator implements Communicator {
  readonly rank: number;
  readonly size: number;
  private readonly peers: readonly number[];

  private constructor(
    private readonly endpoint: Endpoint,
    private readonly members: readonly number[],
    private readonly isWorld: boolean,
  ) {
    this.rank = members.indexOf(endpoint.channel.rank);
    this.size = members.length;
    this.peers = members.filter((member) => member !== endpoint.channel.rank);
  }

  static world(channel: Channel): GroupCommunicator {
    const members = Array.from({ length: channel.size }, (_, index) => index);
    return new GroupCommunicator({ channel, busy: false, closed: false }, members, true);
  }

  async allReduce(data: CollectiveArray): Promise<void> {
    const elementType = elementTypeOf(this.rank, data);
    await this.run(async (channel) => {
      if (this.size === 1) return;
      await channel.publish(OperationKind.AllReduce, data, this.peers);
      const parts: CollectiveArray[] = [];
      for (const member of this.members) {
        parts.push(
          member === channel.rank
            ? data
            : await channel.receive(OperationKind.AllReduce, elementType, data.length, member),
        );
      }
      sumInOrder(data, parts);
      for (const peer of this.peers) channel.release(peer);
    });
  }

  async allGather(input: CollectiveArray, output: CollectiveArray): Promise<void> {
    const elementType = elementTypeOf(this.rank, input);
    checkGather(this.rank, this.size, input, output);
    await this.run(async (channel) => {
      if (this.size > 1) await channel.publish(OperationKind.AllGather, input, this.peers);
      output.set(input, this.rank * input.length);
      for (let index = 0; index < this.size; index += 1) {
        const member = this.members[index]!;
        if (member === channel.rank) continue;
        output.set(await channel.receive(OperationKind.AllGather, elementType, input.length, member), index * input.length);
        channel.release(member);
      }
    });
  }

  async broadcast(data: CollectiveArray, root: number): Promise<void> {
    const elementType = elementTypeOf(this.rank, data);
    checkRank(this.rank, this.size, 'broadcast root', root);
    await this.run(async (channel) => {
      if (this.size === 1) return;
      const rootRank = this.members[root]!;
      if (rootRank === channel.rank) {
        await channel.publish(OperationKind.Broadcast, data, this.peers);
        return;
      }
      data.set(await channel.receive(OperationKind.Broadcast, elementType, data.length, rootRank));
      channel.release(rootRank);
    });
  }

  async send(data: CollectiveArray, destination: number): Promise<void> {
    elementTypeOf(this.rank, data);
    checkPeer(this.rank, this.size, 'send destination', destination);
    await this.run((channel) => channel.publish(OperationKind.PointToPoint, data, [this.members[destination]!]));
  }

  async recv(data: CollectiveArray, source: number): Promise<void> {
    const elementType = elementTypeOf(this.rank, data);
    checkPeer(this.rank, this.size, 'recv source', source);
    await this.run(async (channel) => {
      const peer = this.members[source]!;
      data.set(await channel.receive(OperationKind.PointToPoint, elementType, data.length, peer));
      channel.release(peer);
    });
  }

  subgroup(ranks: readonly number[]): Communicator {
    subgroupIndex(this.rank, this.size, ranks);
    return new GroupCommunicator(
      this.endpoint,
      ranks.map((rank) => this.members[rank]!),
      false,
    );
  }

  async close(): Promise<void> {
    if (!this.isWorld || this.endpoint.closed) return;
    this.endpoint.closed = true;
    await this.endpoint.channel.close();
  }

  private async run(operation: (channel: Channel) => Promise<void>): Promise<void> {
    const endpoint = this.endpoint;
    if (endpoint.closed) throw new CommunicatorError('communicator_closed', this.rank, 'the communicator is closed');
    if (endpoint.busy) {
      throw new CommunicatorError(
        'invalid_collective_argument',
        this.rank,
        'another operation of this rank is still running: await each operation before starting the next',
      );
    }
    endpoint.busy = true;
    try {
      await operation(endpoint.channel);
    } finally {
      endpoint.busy = false;
    }
  }
}

/**
 * `out[i] = ((parts[0][i] + parts[1][i]) + parts[2][i]) + …` with float32 (or int32) rounding after every add.
 * `out` may be one of the parts: each element is read from every part before it is written.
 */
function sumInOrder(out: CollectiveArray, parts: readonly CollectiveArray[]): void {
  const length = out.length;
  const first = parts[0]!;
  if (out instanceof Int32Array) {
    for (let index = 0; index < length; index += 1) {
      let sum = first[index]!;
      for (let part = 1; part < parts.length; part += 1) sum = (sum + parts[part]![index]!) | 0;
      out[index] = sum;
    }
    return;
  }
  if (parts.length === 2) {
    // One add of two float32 values, rounded once by the store: exactly float32 addition.
    const second = parts[1]!;
    for (let index = 0; index < length; index += 1) out[index] = first[index]! + second[index]!;
    return;
  }
  for (let index = 0; index < length; index += 1) {
    let sum = first[index]!;
    for (let part = 1; part < parts.length; part += 1) sum = Math.fround(sum + parts[part]![index]!);
    out[index] = sum;
  }
}

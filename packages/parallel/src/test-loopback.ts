// Loopback worlds for the ZeroMQ tests.
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createZeroMqCommunicator } from './index';
import type { Communicator } from './index';

/** Free loopback ports: the kernel picks them (port 0), we read them and release them at once. */
export async function freeLoopbackEndpoints(count: number): Promise<string[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const endpoints = servers.map((server) => `tcp://127.0.0.1:${(server.address() as AddressInfo).port}`);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return endpoints;
}

/**
 * ZeroMQ communicators for every rank of a world in this process, each bound to a loopback port ZeroMQ picks, so
 * concurrent tests never race for a port.
 */
export async function zeroMqWorld(
  size: number,
  options: { timeoutMs?: number; lingerMs?: number } = {},
): Promise<Communicator[]> {
  const endpoints = new Array<string>(size);
  let bound = 0;
  let resolveAll!: (endpoints: readonly string[]) => void;
  const all = new Promise<readonly string[]>((resolve) => {
    resolveAll = resolve;
  });
  return Promise.all(
    Array.from({ length: size }, (_, rank) =>
      createZeroMqCommunicator({
        rank,
        bindAddress: 'tcp://127.0.0.1:*',
        exchangeEndpoints: async (endpoint) => {
          endpoints[rank] = endpoint;
          bound += 1;
          if (bound === size) resolveAll(endpoints);
          return all;
        },
        timeoutMs: options.timeoutMs ?? 10_000,
        ...(options.lingerMs === undefined ? {} : { lingerMs: options.lingerMs }),
      }),
    ),
  );
}

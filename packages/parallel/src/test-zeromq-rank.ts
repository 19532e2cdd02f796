// A process entry for the cross-process ZeroMQ test (bundled to JavaScript by test-global-setup.ts): one rank that
// runs collective cases over loopback and sends its results to the parent over the IPC channel.
import { createZeroMqCommunicator } from './index';
import { runCollectiveCase } from './test-data';
import type { CollectiveCase } from './test-data';

const { rank, testCases } = JSON.parse(process.argv[2]!) as { rank: number; testCases: CollectiveCase[] };
const communicator = await createZeroMqCommunicator({
  rank,
  bindAddress: 'tcp://127.0.0.1:*',
  // The parent is the rendezvous: it answers with every rank's endpoint once all have bound.
  exchangeEndpoints: (endpoint) =>
    new Promise((resolve) => {
      process.once('message', (message: { endpoints: string[] }) => resolve(message.endpoints));
      process.send!({ rank, endpoint });
    }),
  timeoutMs: 10_000,
});
try {
  const results: Record<string, number[]>[] = [];
  for (const testCase of testCases) {
    const result = await runCollectiveCase(communicator, testCase);
    results.push(Object.fromEntries(Object.entries(result).map(([name, array]) => [name, Array.from(array)])));
  }
  // Disconnecting before a large message is flushed would drop it: wait for the send to complete.
  await new Promise<void>((resolve, reject) =>
    process.send!({ rank, results }, undefined, undefined, (error) => (error ? reject(error) : resolve())),
  );
} finally {
  await communicator.close();
}
process.disconnect();

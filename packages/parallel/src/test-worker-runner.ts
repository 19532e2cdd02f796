// A worker entry for the executor tests (bundled to JavaScript by test-global-setup.ts, since worker threads load
// plain JavaScript): a toy rank runner that echoes, runs collectives, fails or crashes on request.
import { serveExecutorWorker } from './index';
import { runCollectiveCase } from './test-data';
import type { CollectiveCase } from './test-data';

export type TestWorkerInput =
  | { type: 'echo'; value: unknown }
  | { type: 'collectives'; testCase: CollectiveCase }
  | { type: 'all-reduce-then'; then: 'exit' | 'uncaught' | 'throw'; failingRank: number }
  | { type: 'throw'; failingRank: number };

export interface TestWorkerData {
  /** Where each rank writes its collective results: `slotBytes` per rank. */
  results?: SharedArrayBuffer;
  slotBytes?: number;
  failStartupRank?: number;
}

serveExecutorWorker<TestWorkerInput, unknown, TestWorkerData>(({ rank, worldSize, communicator, workerData }) => {
  if (workerData.failStartupRank === rank) throw new Error(`rank ${rank} could not load its shard`);
  return {
    async execute(input) {
      switch (input.type) {
        case 'echo':
          return { rank, worldSize, value: input.value };
        case 'collectives': {
          const results = await runCollectiveCase(communicator, input.testCase);
          const bytes = new Uint8Array(workerData.results!, rank * workerData.slotBytes!, workerData.slotBytes!);
          let offset = 0;
          for (const array of [results.reduced, results.gathered, results.broadcast, results.received]) {
            bytes.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), offset);
            offset += array.byteLength;
          }
          return { rank };
        }
        case 'all-reduce-then':
          // The failing rank leaves; the others wait on it in an all-reduce that can never complete.
          if (rank === input.failingRank) {
            if (input.then === 'exit') process.exit(7);
            if (input.then === 'uncaught') setTimeout(() => { throw new Error('uncaught in a worker'); }, 0);
            if (input.then === 'throw') throw new Error('runner failed mid-step');
            return new Promise(() => {});
          }
          await communicator.allReduce(new Float32Array(8));
          return { rank };
        case 'throw':
          if (rank === input.failingRank) throw new TypeError('bad batch');
          return { rank };
      }
    },
  };
});

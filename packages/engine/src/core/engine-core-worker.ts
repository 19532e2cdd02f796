// The engine core's thread: ONNX Runtime's runs block the thread they run on, so the core lives here and the
// frontend's event loop (HTTP, tokenization, streaming) never waits on a model run.
import { RequestStatus } from '@pagoda/scheduler';
import { parentPort, workerData } from 'node:worker_threads';
import type { EngineCore } from './engine-core';
import { rankExitRequest } from '../parallel/rank-runner';
import { createEngineCore } from './engine-setup';
import { type EngineWorkerData, type FromWorkerMessage, serializeError, type ToWorkerMessage } from './worker-protocol';

const port = parentPort!;
const data = workerData as EngineWorkerData;
const post = (message: FromWorkerMessage) => port.postMessage(message);

let core: EngineCore | undefined;
let shuttingDown = false;
let wake: (() => void) | undefined;
let injectedFault: string | undefined;

port.on('message', (message: ToWorkerMessage) => {
  if (core === undefined) return;
  switch (message.type) {
    case 'add':
      for (const request of message.requests) {
        try {
          core.addRequest(request);
        } catch (error) {
          post({ type: 'request-error', requestId: request.requestId, error: serializeError(error) });
        }
      }
      break;
    case 'abort':
      core.finishRequests(message.requestIds, RequestStatus.FinishedAborted);
      // Freed blocks show in the statistics at once, not only after the next step.
      post({ type: 'stats', stats: core.makeStats() });
      break;
    case 'stop':
      core.finishRequests(message.requestIds, RequestStatus.FinishedStopped);
      post({ type: 'stats', stats: core.makeStats() });
      break;
    case 'shutdown':
      shuttingDown = true;
      core.interruptIdleWait();
      break;
    case 'inject-fault':
      if (message.target === 'rank') core.executor.execute(rankExitRequest).catch(() => undefined);
      else injectedFault = message.message;
      break;
  }
  wake?.();
});

async function main(): Promise<void> {
  core = await createEngineCore({ modelDir: data.modelDir, options: data.options });
  // A grammar that fails to compile ends its request between steps: the frontend hears of it at once.
  core.requestErrorListener = ({ requestId, error }) => post({ type: 'request-error', requestId, error: serializeError(error) });
  post({ type: 'ready', stats: core.makeStats(), kvCache: core.kvCache, startupLog: core.startupLog, startupMemory: core.startupMemory });
  while (!shuttingDown) {
    if (injectedFault !== undefined) throw new Error(injectedFault);
    if (!core.hasUnfinishedRequests()) {
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      continue;
    }
    const outputs = await core.step();
    post({ type: 'outputs', outputs, stats: core.makeStats() });
    // Let queued messages (new requests, aborts) in between steps.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await core.shutdown();
  port.close();
}

// Exit only between model runs: ending the thread while ONNX Runtime runs would take the whole process down.
main().catch((error: unknown) => {
  post({ type: 'fatal', error: serializeError(error) });
  process.exit(1);
});

// The grammar worker's thread. XGrammar's WASM build compiles on its calling thread (a JSON schema takes hundreds of
// milliseconds) and cannot hand a compiled grammar to another thread, so one thread owns the compiler and every
// matcher, and the engine core's step loop only posts tokens and collects bitmasks.
import { readFile } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../core/worker-protocol';
import type { StructuredOutputGrammar } from './backend';
import { bitmaskWords } from './backend';
import { XGrammarBackend } from './backend-xgrammar';
import type { FromGrammarWorkerMessage, GrammarWorkerData, ToGrammarWorkerMessage } from './grammar-protocol';
import { xgrammarVocabulary } from './tokenizer-info';

const port = parentPort!;
const data = workerData as GrammarWorkerData;
const post = (message: FromGrammarWorkerMessage, transfer?: ArrayBuffer[]) => port.postMessage(message, transfer);

const grammars = new Map<string, StructuredOutputGrammar>();
// Messages are handled one after another: each handler awaits XGrammar's promises, and a later message must see
// the state the earlier ones left (tokens accepted before the next bitmask).
let queue: Promise<unknown> = Promise.resolve();

const started = performance.now();
const backend = (async () => {
  const tokenizer = JSON.parse(await readFile(data.tokenizerPath, 'utf8')) as Parameters<typeof xgrammarVocabulary>[0];
  const vocabulary = xgrammarVocabulary(tokenizer, data.vocabSize);
  const infoStarted = performance.now();
  const created = await XGrammarBackend.create({
    vocabulary,
    stopTokenIds: data.stopTokenIds,
    disableAnyWhitespace: data.disableAnyWhitespace,
  });
  post({ type: 'ready', setupMs: performance.now() - started, tokenizerInfoMs: performance.now() - infoStarted });
  return created;
})();

port.on('message', (message: ToGrammarWorkerMessage) => {
  queue = queue.then(() => handle(message)).catch((error: unknown) => post({ type: 'fatal', error: serializeError(error) }));
});

async function handle(message: ToGrammarWorkerMessage): Promise<void> {
  const xgrammar = await backend;
  switch (message.type) {
    case 'compile': {
      const cached = xgrammar.isCompiled(message.key);
      const compileStarted = performance.now();
      try {
        grammars.get(message.requestId)?.dispose();
        grammars.set(message.requestId, await xgrammar.compile(message.key, message.spec));
        post({ type: 'compiled', requestId: message.requestId, key: message.key, error: undefined, compileMs: cached ? 0 : performance.now() - compileStarted });
      } catch (error) {
        post({ type: 'compiled', requestId: message.requestId, key: message.key, error: serializeError(error), compileMs: performance.now() - compileStarted });
      }
      break;
    }
    case 'accept':
      for (const [requestId, tokenIds] of message.tokens) {
        const grammar = grammars.get(requestId);
        if (grammar === undefined) continue;
        for (const tokenId of tokenIds) {
          if (!grammar.acceptTokens([tokenId])) {
            post({ type: 'rejected', requestId, tokenId });
            break;
          }
        }
      }
      break;
    case 'fill': {
      const fillStarted = performance.now();
      const words = bitmaskWords(xgrammar.vocabSize);
      const bitmask = new Int32Array(words * message.requestIds.length);
      for (let row = 0; row < message.requestIds.length; row += 1) {
        const grammar = grammars.get(message.requestIds[row]!);
        // A request the worker has no matcher for is not constrained (it cannot happen in order; never mask blindly).
        if (grammar === undefined) bitmask.fill(-1, row * words, (row + 1) * words);
        else await grammar.fillBitmask(bitmask, row * words);
      }
      post({ type: 'bitmasks', fillId: message.fillId, bitmask, fillMs: performance.now() - fillStarted }, [bitmask.buffer]);
      break;
    }
    case 'remove':
      for (const requestId of message.requestIds) {
        grammars.get(requestId)?.dispose();
        grammars.delete(requestId);
      }
      break;
  }
}

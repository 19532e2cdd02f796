/**
 * A frontend pool worker process (see {@link FrontendPool}): holds its own copy of the checkpoint's tokenizer and
 * renders chat templates and tokenizes text, so that neither ever runs on the caller's event loop. A task that
 * overruns its time is stopped by killing this process; one that overruns its heap ends it (--max-old-space-size).
 */
import { PagodaEngineError } from '../errors';
import { type FrontendTask, type FrontendTaskResult, tokenizerDirVariable } from './frontend-task';
import { TextTokenizer } from './text-tokenizer';

// Without its parent this process has nothing to do.
process.once('disconnect', () => process.exit(0));

const tokenizer = await TextTokenizer.load(process.env[tokenizerDirVariable]!);

export default function runFrontendTask(task: FrontendTask): FrontendTaskResult {
  try {
    switch (task.type) {
      case 'ping':
        return { type: 'ok' };
      case 'gc':
        (globalThis as { gc?: () => void }).gc?.();
        return { type: 'ok' };
      case 'encode':
        return { type: 'ok', tokenIdLists: task.texts.map((text) => tokenizer.encode(text, { addSpecialTokens: task.addSpecialTokens })) };
      case 'decode':
        return { type: 'ok', text: tokenizer.decode(task.tokenIds, { skipSpecialTokens: task.skipSpecialTokens }) };
      case 'render': {
        const text = tokenizer.applyChatTemplate(task.messages, task.options);
        const bytes = Buffer.byteLength(text, 'utf8');
        if (bytes > task.maxOutputBytes) return { type: 'too-long', bytes };
        if (task.encodeWith === undefined) return { type: 'ok', text };
        return { type: 'ok', text, tokenIds: tokenizer.encode(text, { addSpecialTokens: task.encodeWith.addSpecialTokens }) };
      }
    }
  } catch (error) {
    const code = PagodaEngineError.isInstance(error) ? error.code : 'frontend_task_failed';
    return { type: 'error', code, message: error instanceof Error ? error.message : String(error) };
  }
}

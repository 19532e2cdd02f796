import { AsyncLLM } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import { createPagodaServer } from '@pagoda/server';
import { describe, expect, it } from 'vitest';
import { parseServeArgs, runServeCommand } from './serve-command';

describe('pagoda-bench serve against the real Pagoda server', () => {
  it('completes every request with exactly the asked output length and reports vLLM’s metrics', async () => {
    const engine = await AsyncLLM.create(fixturePath('tiny-qwen2'), { kvCacheMemory: '16MiB', maxModelLen: 512, intraOpNumThreads: 1 });
    const server = createPagodaServer({ engine, servedModelName: 'tiny-qwen2', version: 'test' });
    const address = await server.listen(0);
    try {
      const options = parseServeArgs([
        '--base-url', `http://127.0.0.1:${address.port}`,
        '--num-prompts', '16',
        '--random-input-len', '24',
        '--random-output-len', '12',
        '--request-rate', '50',
        '--max-concurrency', '8',
        '--ignore-eos',
        '--seed', '3',
        '--tokenizer', fixturePath('tiny-qwen2'),
      ]);
      const { metrics } = await runServeCommand(options, { log: () => undefined, progress: undefined });
      expect(metrics.completed).toBe(16);
      expect(metrics.failed).toBe(0);
      expect(metrics.totalOutput).toBe(16 * 12);
      expect(metrics.totalInput).toBe(16 * 24);
      expect(metrics.maxConcurrentRequests).toBeLessThanOrEqual(8);
    } finally {
      await server.close();
      await engine.close();
    }
  }, 60_000);
});

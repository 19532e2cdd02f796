import { describe, expect, it } from 'vitest';
import { defaultModelDir, parseServeArgs, UsageError } from './args';
import { serve } from './serve';

describe('pagoda serve', () => {
  it('defaults to the built-in model on 127.0.0.1:8000', () => {
    expect(parseServeArgs([])).toEqual({ model: defaultModelDir, host: '127.0.0.1', port: 8000, servedModelName: undefined });
  });

  it('rejects an unknown flag and a bad port with a usage error', () => {
    expect(() => parseServeArgs(['--modle', 'x'])).toThrow(UsageError);
    expect(() => parseServeArgs(['--port', '70000'])).toThrow('--port must be an integer in [0, 65535], got "70000"');
  });

  it('serves the built-in default model over HTTP', async () => {
    const lines: string[] = [];
    const running = await serve(parseServeArgs(['--port', '0']), '0.0.0-test', (line) => lines.push(line));
    try {
      expect(running.servedModelName).toBe('tiny-qwen2');
      expect((await fetch(`${running.url}/health`)).status).toBe(200);
      const models = (await (await fetch(`${running.url}/v1/models`)).json()) as { data: Array<{ id: string }> };
      expect(models.data[0]!.id).toBe('tiny-qwen2');
      expect(lines.join('\n')).toMatch(/not implemented yet/);
    } finally {
      await running.server.close();
    }
  });
});

import { fixturePath } from '@pagoda/fixtures';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { loadGenerationConfig, parseGenerationConfig } from './generation-config';

describe('generation_config.json', () => {
  it('supplies the checkpoint’s sampling defaults and end tokens', async () => {
    expect(await loadGenerationConfig(fixturePath('tiny-qwen2'))).toEqual({
      defaults: { temperature: 0.7, topP: 0.8, topK: 20 },
      eosTokenIds: [151645],
    });
  });

  it('is optional', async () => {
    expect(await loadGenerationConfig(tmpdir())).toEqual({ defaults: {}, eosTokenIds: [] });
  });

  it('reads do_sample: false as greedy, and max_new_tokens and lists of EOS ids', () => {
    expect(parseGenerationConfig({ do_sample: false, temperature: 0.6, max_new_tokens: 99, eos_token_id: [1, 7] })).toEqual({
      defaults: { temperature: 0, maxTokens: 99 },
      eosTokenIds: [1, 7],
    });
  });
});

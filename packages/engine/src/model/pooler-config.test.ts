import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadPoolerConfig } from './pooler-config';

describe('loadPoolerConfig', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });
  async function checkpoint(files: Record<string, unknown>): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'pagoda-pooler-'));
    dirs.push(dir);
    for (const [name, content] of Object.entries(files)) {
      await mkdir(join(dir, name, '..'), { recursive: true });
      await writeFile(join(dir, name), JSON.stringify(content));
    }
    return dir;
  }
  const modules = (withNormalize: boolean) => [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
    ...(withNormalize ? [{ idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' }] : []),
  ];

  it('defaults to vLLM’s for decoder models: the last token, normalized', async () => {
    expect(await loadPoolerConfig(await checkpoint({}))).toEqual({ poolingType: 'LAST', normalize: true });
  });

  it('reads sentence-transformers’ modules.json and 1_Pooling/config.json', async () => {
    const mean = await checkpoint({ 'modules.json': modules(false), '1_Pooling/config.json': { pooling_mode_mean_tokens: true, pooling_mode_lasttoken: false } });
    expect(await loadPoolerConfig(mean)).toEqual({ poolingType: 'MEAN', normalize: false });
    const last = await checkpoint({ 'modules.json': modules(true), '1_Pooling/config.json': { pooling_mode_lasttoken: true } });
    expect(await loadPoolerConfig(last)).toEqual({ poolingType: 'LAST', normalize: true });
  });

  it('lets --pooler-config override the checkpoint, field by field', async () => {
    const last = await checkpoint({ 'modules.json': modules(true), '1_Pooling/config.json': { pooling_mode_lasttoken: true } });
    expect(await loadPoolerConfig(last, { pooling_type: 'mean' })).toEqual({ poolingType: 'MEAN', normalize: true });
    expect(await loadPoolerConfig(last, { normalize: false })).toEqual({ poolingType: 'LAST', normalize: false });
  });

  it('refuses a pooling mode it does not run, naming it', async () => {
    const cls = await checkpoint({ 'modules.json': modules(false), '1_Pooling/config.json': { pooling_mode_cls_token: true } });
    await expect(loadPoolerConfig(cls)).rejects.toThrow(/pooling_mode_cls_token is not supported/);
    await expect(loadPoolerConfig(await checkpoint({}), { pooling_type: 'MAX' })).rejects.toThrow(/pooling_type must be one of LAST, MEAN, got "MAX"/);
  });
});

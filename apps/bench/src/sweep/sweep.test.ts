import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../cli-args';
import { startFakeCompletionsServer } from '../serve/fake-completions-server';
import { chartSvg, niceTicks } from './svg-chart';
import { parseSweepArgs, runSweep } from './sweep';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'pagoda-bench-sweep-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('niceTicks', () => {
  it('covers the range with round steps of 1, 2 or 5 times a power of ten', () => {
    expect(niceTicks(0, 87)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 4300)).toEqual([0, 1000, 2000, 3000, 4000, 5000]);
  });

  it('still gives an axis for an empty range', () => {
    expect(niceTicks(0, 0).length).toBeGreaterThanOrEqual(2);
  });
});

describe('chartSvg', () => {
  it('draws one marker and label per point, with the text escaped', () => {
    const svg = chartSvg('a <b> & c', [
      { title: 'left', xLabel: 'x', yLabel: 'y', points: [{ x: 1, y: 2, label: 'one' }, { x: 3, y: 4, label: 'two' }] },
      { title: 'right', xLabel: 'x', yLabel: 'y', points: [{ x: 1, y: 1, label: 'three' }] },
    ]);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.match(/<circle /g)).toHaveLength(3);
    expect(svg).toContain('a &lt;b&gt; &amp; c');
    expect(svg).toContain('>two</text>');
    expect(svg).not.toContain('NaN');
  });
});

describe('parseSweepArgs', () => {
  it('takes exactly one list and passes the other options to every serve run', () => {
    const parsed = parseSweepArgs(['--request-rates', '1,2,inf', '--num-prompts', '5', '--metric-percentiles', '50', '--percentile-metrics', 'tpot']);
    expect(parsed.rates).toEqual([1, 2, Infinity]);
    expect(parsed.serve.numPrompts).toBe(5);
    expect(parsed.serve.metricPercentiles).toEqual([50, 99]);
    expect(parsed.serve.percentileMetrics).toEqual(['tpot', 'ttft', 'itl']);
    expect(() => parseSweepArgs(['--num-prompts', '5'])).toThrow(UsageError);
    expect(() => parseSweepArgs(['--request-rates', '1', '--max-concurrencies', '2'])).toThrow(UsageError);
    expect(() => parseSweepArgs(['--max-concurrencies', '0'])).toThrow(/max-concurrencies/);
  });
});

describe('runSweep', () => {
  it('runs serve once per concurrency and saves the points as JSON and a chart', async () => {
    const server = await startFakeCompletionsServer();
    try {
      const { points, jsonFile, svgFile } = await runSweep(
        ['--base-url', server.baseUrl, '--max-concurrencies', '1,4', '--num-prompts', '4', '--random-input-len', '4', '--random-output-len', '3', '--result-dir', directory, '--disable-tqdm'],
        { log: () => undefined },
      );
      expect(points.map((point) => [point.max_concurrency, point.completed])).toEqual([
        [1, 4],
        [4, 4],
      ]);
      const saved = JSON.parse(await readFile(jsonFile, 'utf8')) as { points: unknown[]; swept: string; model_id: string };
      expect(saved).toMatchObject({ swept: 'max_concurrency', model_id: 'fake-model' });
      expect(saved.points).toHaveLength(2);
      const svg = await readFile(svgFile, 'utf8');
      expect(svg.match(/<circle /g)).toHaveLength(4);
      expect(svg).toContain('c=4');
    } finally {
      await server.close();
    }
  });
});

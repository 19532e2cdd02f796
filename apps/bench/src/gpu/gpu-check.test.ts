import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatGpuNotes, parseGpuCheckArgs, runGpuCheck } from './gpu-check';

// The GPU check runs on a lent GPU machine, not in CI; on the CPU it runs the same steps on the paged reference
// runner, which keeps the script itself working between GPU sessions.
describe('pagoda-bench gpu-check', () => {
  it('parses its options and refuses bad ones', () => {
    expect(parseGpuCheckArgs([])).toMatchObject({ device: 'cuda', streams: [1, 8, 32, 64, 128], inputLength: 128, outputLength: 128, skipPerf: false, gpuMemoryUtilization: 0.3 });
    expect(parseGpuCheckArgs(['--device', 'cpu', '--streams', '1,4']).streams).toEqual([1, 4]);
    expect(() => parseGpuCheckArgs(['--device', 'tpu'])).toThrow(/--device must be cuda, webgpu or cpu/);
    expect(() => parseGpuCheckArgs(['--streams', '1,0'])).toThrow(/--streams must be a positive integer/);
  });

  it('runs every part on the CPU reference runner and writes its JSON and notes', async () => {
    const outDir = await mkdtemp(join(tmpdir(), 'pagoda-gpu-check-'));
    const lines: string[] = [];
    const result = await runGpuCheck(
      { ...parseGpuCheckArgs(['--device', 'cpu', '--streams', '1,2', '--input-len', '8', '--output-len', '4', '--prompts-per-stream', '1', '--memory-bandwidth-gbs', '10']), outDir, models: ['tiny-llama'] },
      (line) => lines.push(line),
    );
    expect(result.errors).toEqual([]);
    expect(result.correctness).toHaveLength(1);
    expect(result.correctness[0]).toMatchObject({ model: 'tiny-llama', dtype: 'float32', blockSize: 16, judged: true, passed: true });
    expect(result.correctness[0]!.maxPrefillDifference).toBeLessThan(1e-4);
    expect(result.busy).toMatchObject({ requests: 16, passed: true, mismatches: [] });
    expect(result.perf.map((point) => point.streams)).toEqual([1, 2]);
    expect(result.perf.every((point) => point.outputTokensPerSecond > 0)).toBe(true);
    expect(result.batchOneRunner!.rooflineTokensPerSecond).toBeCloseTo(10e9 / result.batchOneRunner!.weightBytes, 6);
    const notes = await readFile(join(outDir, 'gpu-notes.md'), 'utf8');
    expect(notes).toBe(formatGpuNotes(JSON.parse(await readFile(join(outDir, 'gpu-check.json'), 'utf8'))));
    expect(notes).toMatch(/\| tiny-llama \| float32 \| 16 \| .* \| pass \|/);
    expect(notes).toMatch(/\| 1 \| [\d.]+ \| [\d.]+ \| 11\.7 \|/);
    expect(lines.join('\n')).toMatch(/busy run: 16 requests, \d+ preemptions, 0 differ from solo -> PASS/);
  }, 120_000);
});

import { describe, expect, it } from 'vitest';
import { ProgressBar } from './progress-bar';

describe('ProgressBar', () => {
  it('redraws one line on a terminal and ends it on finish', () => {
    const writes: string[] = [];
    let time = 0;
    const bar = new ProgressBar('requests', 4, { isTTY: true, write: (text) => writes.push(text) }, () => time);
    time = 1;
    bar.tick();
    time = 2;
    bar.tick(3);
    bar.finish();
    expect(writes[0]).toMatch(/^\rrequests {3}0% \|░{30}\| 0\/4/);
    expect(writes).toContain(`\rrequests 100% |${'█'.repeat(30)}| 4/4 [00:02, 2.0 it/s]`);
    expect(writes.at(-1)).toBe('\n');
  });

  it('draws nothing where the stream is not a terminal', () => {
    const writes: string[] = [];
    const bar = new ProgressBar('requests', 2, { isTTY: false, write: (text) => writes.push(text) });
    bar.tick(2);
    bar.finish();
    expect(writes).toEqual([]);
  });
});

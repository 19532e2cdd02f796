import { describe, expect, it } from 'vitest';
import { parseJsonlDataset, randomDataset } from './datasets';

const base = { numPrompts: 50, inputLength: 64, outputLength: 16, rangeRatio: 0, prefixLength: 0, vocabSize: 1000, seed: 0 };

describe('randomDataset', () => {
  it('makes prompts of exactly the input length with in-vocabulary ids when the range ratio is 0', () => {
    const requests = randomDataset(base);
    expect(requests).toHaveLength(50);
    for (const request of requests) {
      expect(request.prompt).toHaveLength(64);
      expect(request.promptLength).toBe(64);
      expect(request.expectedOutputLength).toBe(16);
      for (const id of request.prompt as number[]) expect(id >= 0 && id < 1000).toBe(true);
    }
  });

  it('is the same for the same seed and differs for another', () => {
    expect(randomDataset(base)).toEqual(randomDataset(base));
    expect(randomDataset(base)).not.toEqual(randomDataset({ ...base, seed: 1 }));
  });

  it('draws lengths within [len·(1−r), len·(1+r)] and uses the whole range', () => {
    const requests = randomDataset({ ...base, numPrompts: 400, rangeRatio: 0.5 });
    const inputs = requests.map((request) => request.promptLength);
    const outputs = requests.map((request) => request.expectedOutputLength);
    expect(Math.min(...inputs)).toBe(32);
    expect(Math.max(...inputs)).toBe(96);
    expect(Math.min(...outputs)).toBe(8);
    expect(Math.max(...outputs)).toBe(24);
  });

  it('starts every prompt with the same shared prefix, followed by different tokens', () => {
    const requests = randomDataset({ ...base, prefixLength: 10 });
    const prefix = (requests[0]!.prompt as number[]).slice(0, 10);
    for (const request of requests) {
      expect(request.promptLength).toBe(74);
      expect((request.prompt as number[]).slice(0, 10)).toEqual(prefix);
    }
    const suffixes = new Set(requests.map((request) => JSON.stringify((request.prompt as number[]).slice(10))));
    expect(suffixes.size).toBe(50);
  });

  it('never draws excluded (special) token ids', () => {
    const requests = randomDataset({ ...base, vocabSize: 8, excludedTokenIds: [0, 1, 2], prefixLength: 20 });
    for (const request of requests) for (const id of request.prompt as number[]) expect(id).toBeGreaterThanOrEqual(3);
  });

  it('rejects a range ratio outside [0, 1)', () => {
    expect(() => randomDataset({ ...base, rangeRatio: 1 })).toThrow(/range-ratio/);
  });
});

describe('parseJsonlDataset', () => {
  const countTokens = (text: string) => text.split(' ').length;

  it('reads text and token-id prompts with their output lengths, skipping blank lines', () => {
    const text = '{"prompt": "a b c", "output_len": 5}\n\n{"prompt": [1, 2, 3, 4]}\n';
    expect(parseJsonlDataset(text, 'p.jsonl', { numPrompts: undefined, defaultOutputLength: 9, countTokens })).toEqual([
      { prompt: 'a b c', promptLength: 3, expectedOutputLength: 5 },
      { prompt: [1, 2, 3, 4], promptLength: 4, expectedOutputLength: 9 },
    ]);
  });

  it('takes the first --num-prompts lines, or cycles through a shorter file', () => {
    const text = '{"prompt": "x"}\n{"prompt": "y"}\n{"prompt": "z"}\n';
    const prompts = (numPrompts: number) =>
      parseJsonlDataset(text, 'p.jsonl', { numPrompts, defaultOutputLength: 1, countTokens }).map((request) => request.prompt);
    expect(prompts(2)).toEqual(['x', 'y']);
    expect(prompts(5)).toEqual(['x', 'y', 'z', 'x', 'y']);
  });

  it('names the file and line of a bad record', () => {
    const options = { numPrompts: undefined, defaultOutputLength: 1, countTokens };
    expect(() => parseJsonlDataset('{"prompt": "ok"}\n{"text": "no"}\n', 'p.jsonl', options)).toThrow(/p\.jsonl:2/);
    expect(() => parseJsonlDataset('not json\n', 'p.jsonl', options)).toThrow(/p\.jsonl:1: not JSON/);
    expect(() => parseJsonlDataset('{"prompt": "a", "output_len": 0}\n', 'p.jsonl', options)).toThrow(/output_len/);
  });
});

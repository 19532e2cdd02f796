import { decodeFloat32Base64, readFixtureJson } from '@pagoda/fixtures';
import { describe, expect, it } from 'vitest';
import { logSoftmax, logSumExpOf, softmax } from './index';

interface SamplingFixture {
  logits_f32_b64: string;
  cases: Array<{ params: Record<string, number>; order: string[]; kept: number[]; probs: number[] }>;
}

const fixture = readFixtureJson<SamplingFixture>('sampling.json');
const logits = decodeFloat32Base64(fixture.logits_f32_b64);

describe('softmax', () => {
  it.each(fixture.cases.filter((testCase) => testCase.order.join() === 'TemperatureLogitsWarper'))(
    'equals Hugging Face at temperature $params.temperature',
    ({ params, kept, probs }) => {
      const scaled = logits.map((value) => value / params.temperature!);
      const ours = softmax(scaled);
      expect(kept).toHaveLength(logits.length);
      kept.forEach((tokenId, index) => {
        expect(ours[tokenId]).toBeCloseTo(probs[index]!, 5);
      });
    },
  );

  it('gives masked (-Infinity) entries probability zero and sums to one', () => {
    const row = new Float32Array([1, -Infinity, 3, -Infinity]);
    const probabilities = softmax(row);
    expect(probabilities[1]).toBe(0);
    expect(probabilities[3]).toBe(0);
    expect(probabilities[0]! + probabilities[2]!).toBeCloseTo(1, 6);
  });

  it('log-softmax is the log of softmax and stays finite for large logits', () => {
    const row = new Float32Array([1000, 999, 998]);
    const logProbabilities = logSoftmax(row);
    const probabilities = softmax(row);
    for (let index = 0; index < row.length; index += 1) {
      expect(Math.exp(logProbabilities[index]!)).toBeCloseTo(probabilities[index]!, 6);
    }
    expect(logSumExpOf(row)).toBeCloseTo(1000 + Math.log(1 + Math.exp(-1) + Math.exp(-2)), 4);
  });

  it('refuses a row in which every token is masked', () => {
    expect(() => softmax(new Float32Array([-Infinity, -Infinity]))).toThrow(/every logit is -Infinity/);
  });
});

import { dummyWeights, ModelRunner, parseModelConfig, quantizeModelWeights } from '@pagoda/engine';
import { smolLm2Shape } from './src/dummy-model';
const config = parseModelConfig(smolLm2Shape);
const variants = [[undefined, 4], ['int8', 1], ['int8', 4], ['int4', 1], ['int4', 4]] as const;
const runners = [];
for (const [q, level] of variants) runners.push(await ModelRunner.create(config, quantizeModelWeights(dummyWeights(config, 0), q), { numBlocks: 32 * 18, blockSize: 16, intraOpNumThreads: 2, accuracyLevel: level }));
const step = (runner: ModelRunner, batch: number) => runner.execute(Array.from({ length: batch }, (_, r) => ({ tokenIds: [100 + r], numComputedTokens: 256, blockTable: Array.from({ length: 17 }, (_, b) => r * 17 + b) })));
for (const batch of [1, 32]) {
  const times = variants.map(() => [] as number[]);
  for (let round = 0; round < 6; round++) for (const [i, runner] of runners.entries()) { const t = performance.now(); await step(runner, batch); times[i]!.push(performance.now() - t); }
  const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  console.log(`batch ${batch}: ` + variants.map(([q, l], i) => `${q ?? 'f32'}/L${l} ${(batch * 1000 / med(times[i]!.slice(1))).toFixed(1)} tok/s`).join(', '), `weights ${runners.map((r) => (r.weightBytes / 2 ** 20).toFixed(0)).join('/')} MiB`);
}

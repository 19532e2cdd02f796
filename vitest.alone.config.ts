// The tests that assert timings or memory (`*.alone.test.ts`): one file at a time, after the other tests, so that
// nothing else runs on the machine beside them. The quick start's test command runs this after vitest.config.ts.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: ['packages/*/vitest.alone.config.ts', 'apps/*/vitest.alone.config.ts'],
    fileParallelism: false,
    reporters: ['default', '@pagoda/vitest-config/summary-reporter'],
  },
});

// Runs every workspace project's tests in one Vitest process (the quick start's test command uses this, and so
// does `pnpm test:unit`). Each project has its own vitest.config.ts built on @pagoda/vitest-config.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: ['packages/*/vitest.config.ts', 'apps/*/vitest.config.ts', 'tooling/*/vitest.config.ts'],
    reporters: ['default', '@pagoda/vitest-config/summary-reporter'],
  },
});

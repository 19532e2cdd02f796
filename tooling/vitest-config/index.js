// Shared Vitest settings for every package. The `@pagoda/source` export condition makes an import of a workspace
// package (`@pagoda/kv-cache`) resolve to its `src/index.ts`, so tests run from source with no build step.
import { defineProject, mergeConfig } from 'vitest/config';

export const SOURCE_CONDITION = '@pagoda/source';

const resolveFromSource = {
  conditions: [SOURCE_CONDITION, 'module', 'node', 'import', 'default'],
};

/**
 * Tests that assert timings or memory (`*.alone.test.ts`) run in a Vitest run of their own, one file at a time
 * (the root `vitest.alone.config.ts`), so no other suite shares the machine with them.
 */
const aloneTests = '**/*.alone.test.ts';

/** The shared settings of both kinds of project, with the files each one runs. */
function project(test, overrides) {
  return mergeConfig(
    defineProject({
      resolve: resolveFromSource,
      ssr: { resolve: { conditions: resolveFromSource.conditions, externalConditions: [SOURCE_CONDITION] } },
      test: { environment: 'node', testTimeout: 30_000, hookTimeout: 30_000, ...test },
    }),
    overrides,
  );
}

/** The base project configuration; `overrides` are merged over it. */
export function pagodaProject(overrides = {}) {
  return project({ include: ['src/**/*.test.ts', 'test/**/*.test.ts'], exclude: ['**/node_modules/**', aloneTests] }, overrides);
}

/** A package's tests that run alone (`*.alone.test.ts`), with `global.gc` exposed for memory measurements. */
export function pagodaAloneProject(overrides = {}) {
  return project(
    { include: [`src/${aloneTests}`], exclude: ['**/node_modules/**'], execArgv: ['--expose-gc'], testTimeout: 120_000, hookTimeout: 120_000 },
    overrides,
  );
}

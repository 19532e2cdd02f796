// Shared Vitest settings for every package. The `@pagoda/source` export condition makes an import of a workspace
// package (`@pagoda/kv-cache`) resolve to its `src/index.ts`, so tests run from source with no build step.
import { defineProject, mergeConfig } from 'vitest/config';

export const SOURCE_CONDITION = '@pagoda/source';

const resolveFromSource = {
  conditions: [SOURCE_CONDITION, 'module', 'node', 'import', 'default'],
};

/** The base project configuration; `overrides` are merged over it. */
export function pagodaProject(overrides = {}) {
  return mergeConfig(
    defineProject({
      resolve: resolveFromSource,
      ssr: { resolve: { conditions: resolveFromSource.conditions, externalConditions: [SOURCE_CONDITION] } },
      test: {
        include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
        environment: 'node',
        testTimeout: 30_000,
        hookTimeout: 30_000,
      },
    }),
    overrides,
  );
}

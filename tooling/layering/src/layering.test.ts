import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkLayers, formatViolations } from './layering.mjs';

const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const cli = join(repositoryRoot, 'tooling', 'layering', 'bin', 'check-layers.mjs');

/** A copy of the real workspace's packages and apps (manifests and sources), to plant bad imports in. */
function copyWorkspace(): string {
  const copy = mkdtempSync(join(tmpdir(), 'pagoda-layering-'));
  const filter = (source: string) => !/[/\\](node_modules|dist|\.turbo|data)([/\\]|$)/.test(source);
  for (const folder of ['packages', 'apps', 'tooling']) {
    cpSync(join(repositoryRoot, folder), join(copy, folder), { recursive: true, filter });
  }
  return copy;
}

function runCli(root: string): { status: number; output: string } {
  try {
    return { status: 0, output: execFileSync(process.execPath, [cli, root], { encoding: 'utf8', stdio: 'pipe' }) };
  } catch (error) {
    const failure = error as { status: number; stderr: string };
    return { status: failure.status, output: failure.stderr };
  }
}

describe('the layering check', () => {
  it('passes on this repository', () => {
    const violations = checkLayers(repositoryRoot);
    expect(formatViolations(violations)).toBe('');
    expect(runCli(repositoryRoot).status).toBe(0);
  });

  describe('on a copy of the workspace with a planted import', () => {
    let copy: string;
    beforeEach(() => {
      copy = copyWorkspace();
    });
    afterEach(() => {
      rmSync(copy, { recursive: true, force: true });
    });

    it('fails when sampling imports the scheduler, naming the file, the line and the rule', () => {
      const index = join(copy, 'packages', 'sampling', 'src', 'index.ts');
      const lines = readFileSync(index, 'utf8').split('\n').length;
      appendFileSync(index, "import { RequestStatus } from '@pagoda/scheduler';\n");
      const violations = checkLayers(copy);
      expect(violations).toEqual([
        {
          file: 'packages/sampling/src/index.ts',
          line: lines,
          message: '@pagoda/sampling may not import @pagoda/scheduler (it may import no other @pagoda package)',
        },
      ]);
      const result = runCli(copy);
      expect(result.status).toBe(1);
      expect(result.output).toContain('packages/sampling/src/index.ts');
    });

    it.each([
      ['a type-only import', "import type { ModelConfig } from '@pagoda/engine';"],
      ['a re-export', "export * from '@pagoda/engine';"],
      ['a dynamic import', "export const load = () => import('@pagoda/engine');"],
      ['a subpath import', "import '@pagoda/engine/package.json';"],
    ])('catches %s of a higher layer (kv-cache importing engine)', (_kind, statement) => {
      appendFileSync(join(copy, 'packages', 'kv-cache', 'src', 'index.ts'), `${statement}\n`);
      expect(checkLayers(copy).map((violation) => violation.message)).toEqual([
        '@pagoda/kv-cache may not import @pagoda/engine (it may import no other @pagoda package)',
      ]);
    });

    it('catches the server importing a lower layer that engine does not stand for (the scheduler)', () => {
      appendFileSync(join(copy, 'packages', 'server', 'src', 'index.ts'), "export { Scheduler } from '@pagoda/scheduler';\n");
      expect(checkLayers(copy).map((violation) => violation.message)).toEqual([
        '@pagoda/server may not import @pagoda/scheduler (it may import @pagoda/engine)',
      ]);
    });

    it('catches a relative import that reaches into another package', () => {
      appendFileSync(join(copy, 'packages', 'parallel', 'src', 'index.ts'), "import '../../kv-cache/src/index';\n");
      expect(checkLayers(copy)[0]!.message).toMatch(/reaches outside its folder/);
    });

    it('catches a forbidden dependency in package.json', () => {
      const manifestPath = join(copy, 'packages', 'scheduler', 'package.json');
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
      manifest.dependencies['@pagoda/engine'] = 'workspace:^';
      writeFileSync(manifestPath, JSON.stringify(manifest));
      expect(checkLayers(copy).map((violation) => violation.message)).toEqual([
        'dependencies: @pagoda/scheduler may not import @pagoda/engine (it may import @pagoda/kv-cache)',
      ]);
    });

    it('lets tests use the tooling packages but not the published code', () => {
      writeFileSync(join(copy, 'packages', 'sampling', 'src', 'extra.test.ts'), "import '@pagoda/fixtures';\n");
      expect(checkLayers(copy)).toEqual([]);
      appendFileSync(join(copy, 'packages', 'sampling', 'src', 'index.ts'), "import '@pagoda/fixtures';\n");
      expect(checkLayers(copy).map((violation) => violation.message)).toEqual([
        '@pagoda/sampling may use the tooling package @pagoda/fixtures in tests and configs only',
      ]);
    });
  });
});

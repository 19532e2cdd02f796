// The layering check. Lower layers never import higher ones:
//
//   sampling   kv-cache          (import no other package)
//      |          |
//      |      scheduler         (imports kv-cache)      parallel (imports none of the others)
//       \         |            /
//               engine          (imports sampling, kv-cache, scheduler, parallel)
//                 |
//               server          (imports engine, and the types engine re-exports)
//       apps/server, apps/bench (import anything)
//
// Every import of a workspace package is checked: static and type-only imports, `export ... from`, dynamic
// `import()` and `require()`, in every source and config file of a package, as well as the package.json
// dependencies. Tooling packages (tooling/*: fixtures, shared configs) may be used by tests and config files only.
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join, relative, resolve, sep, dirname } from 'node:path';
import ts from 'typescript';

/** Which workspace packages each published package may import. Apps may import any package. */
export const layerRules = {
  '@pagoda/sampling': [],
  '@pagoda/kv-cache': [],
  '@pagoda/scheduler': ['@pagoda/kv-cache'],
  '@pagoda/parallel': [],
  '@pagoda/engine': ['@pagoda/sampling', '@pagoda/kv-cache', '@pagoda/scheduler', '@pagoda/parallel'],
  '@pagoda/server': ['@pagoda/engine'],
};

const sourceExtensions = /\.(?:[cm]?[jt]sx?)$/;
const sourceDirectories = ['src', 'test', 'bin'];
const runtimeDependencyFields = ['dependencies', 'peerDependencies', 'optionalDependencies'];

/** Files that only tests or tooling load: they may also use the private tooling packages. */
function isTestOrConfigFile(relativePath) {
  return (
    /(^|\/)[^/]+\.test\.[cm]?[jt]sx?$/.test(relativePath) ||
    /(^|\/)test-[^/]+\.[cm]?[jt]sx?$/.test(relativePath) ||
    relativePath.startsWith('test/') ||
    /^[^/]+\.config\.[cm]?[jt]s$/.test(relativePath)
  );
}

/** Lists the workspace's projects: `{ name, dir, kind: 'package' | 'app' | 'tooling', manifest }`. */
export function listWorkspaceProjects(rootDir) {
  const kinds = { packages: 'package', apps: 'app', tooling: 'tooling' };
  const projects = [];
  for (const [folder, kind] of Object.entries(kinds)) {
    const parent = join(rootDir, folder);
    if (!existsSync(parent)) continue;
    for (const entry of readdirSync(parent).sort()) {
      const manifestPath = join(parent, entry, 'package.json');
      if (!existsSync(manifestPath)) continue;
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
      projects.push({ name: manifest.name, dir: join(parent, entry), kind, manifest });
    }
  }
  return projects;
}

/** A project's source files: those at its top level (configs) and everything under src/, test/ and bin/. */
function listSourceFiles(projectDir) {
  const files = [];
  const visit = (dir, recurse) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      const stats = statSync(path);
      if (stats.isDirectory()) {
        if (recurse || (dir === projectDir && sourceDirectories.includes(entry))) visit(path, true);
      } else if (sourceExtensions.test(entry) && !/\.d\.[cm]?ts$/.test(entry)) {
        files.push(path);
      }
    }
  };
  visit(projectDir, false);
  return files;
}

function lineOf(text, position) {
  let line = 1;
  for (let index = 0; index < position; index += 1) if (text.charCodeAt(index) === 10) line += 1;
  return line;
}

/** The workspace package an import specifier names, if any (`@pagoda/engine/sub` → `@pagoda/engine`). */
function workspacePackageOf(specifier, projectNames) {
  for (const name of projectNames) {
    if (specifier === name || specifier.startsWith(`${name}/`)) return name;
  }
  return specifier.startsWith('@pagoda/') ? specifier.split('/').slice(0, 2).join('/') : undefined;
}

/**
 * Checks the workspace at `rootDir`. Returns the violations, each `{ file, line, message }` (file relative to the
 * root); an empty array means the layers hold.
 */
export function checkLayers(rootDir) {
  const root = resolve(rootDir);
  const projects = listWorkspaceProjects(root);
  const projectsByName = new Map(projects.map((project) => [project.name, project]));
  const projectNames = [...projectsByName.keys()].sort((left, right) => right.length - left.length);
  const violations = [];

  const allowedFor = (project, target, testOrConfig) => {
    const targetProject = projectsByName.get(target);
    if (targetProject === undefined) return { allowed: false, reason: `${target} is not a package of this workspace` };
    if (target === project.name) return { allowed: true };
    if (project.kind === 'app') return { allowed: true };
    if (targetProject.kind === 'tooling') {
      return testOrConfig || project.kind === 'tooling'
        ? { allowed: true }
        : { allowed: false, reason: `${project.name} may use the tooling package ${target} in tests and configs only` };
    }
    if (project.kind === 'tooling') return { allowed: false, reason: `tooling package ${project.name} may not import ${target}` };
    if (targetProject.kind === 'app') return { allowed: false, reason: `${project.name} may not import the app ${target}` };
    const rule = layerRules[project.name];
    if (rule === undefined) {
      return { allowed: false, reason: `${project.name} has no entry in layerRules (tooling/layering/src/layering.mjs)` };
    }
    return rule.includes(target)
      ? { allowed: true }
      : {
          allowed: false,
          reason: `${project.name} may not import ${target} (it may import ${rule.length === 0 ? 'no other @pagoda package' : rule.join(', ')})`,
        };
  };

  for (const project of projects) {
    const manifestFile = relative(root, join(project.dir, 'package.json'));
    if (project.kind === 'package' && layerRules[project.name] === undefined) {
      violations.push({ file: manifestFile, line: 1, message: `${project.name} has no entry in layerRules` });
    }
    for (const field of [...runtimeDependencyFields, 'devDependencies']) {
      for (const dependency of Object.keys(project.manifest[field] ?? {})) {
        if (!dependency.startsWith('@pagoda/') && !projectsByName.has(dependency)) continue;
        const verdict = allowedFor(project, dependency, field === 'devDependencies');
        if (!verdict.allowed) violations.push({ file: manifestFile, line: 1, message: `${field}: ${verdict.reason}` });
      }
    }
    for (const file of listSourceFiles(project.dir)) {
      const text = readFileSync(file, 'utf8');
      const relativeToProject = relative(project.dir, file).split(sep).join('/');
      const testOrConfig = isTestOrConfigFile(relativeToProject);
      const { importedFiles } = ts.preProcessFile(text, true, true);
      for (const imported of importedFiles) {
        const specifier = imported.fileName;
        const where = { file: relative(root, file).split(sep).join('/'), line: lineOf(text, imported.pos) };
        if (specifier.startsWith('.')) {
          const target = resolve(dirname(file), specifier);
          if (target !== project.dir && !target.startsWith(project.dir + sep)) {
            violations.push({
              ...where,
              message: `${project.name} reaches outside its folder with "${specifier}"; import the package by name`,
            });
          }
          continue;
        }
        const target = workspacePackageOf(specifier, projectNames);
        if (target === undefined) continue;
        const verdict = allowedFor(project, target, testOrConfig);
        if (!verdict.allowed) violations.push({ ...where, message: verdict.reason });
      }
    }
  }
  return violations;
}

/** Formats violations as `file:line: message` lines. */
export function formatViolations(violations) {
  return violations.map((violation) => `${violation.file}:${violation.line}: ${violation.message}`).join('\n');
}

import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Where a worker thread loads one of this package's worker entries (`name` relative to `src/`, without extension):
 * in a package install, the built `dist/<basename>.js` beside the bundle that runs this; in this repository's tests
 * (TypeScript from source), a `data:` module that registers tsx's module hooks and imports the `.ts` source, with
 * the `@pagoda/source` condition so workspace packages resolve to their sources too.
 */
export function workerEntry(name: string): { url: URL; execArgv?: string[] } {
  const basename = name.slice(name.lastIndexOf('/') + 1);
  if (!import.meta.url.endsWith('.ts')) return { url: new URL(`./${basename}.js`, import.meta.url) };
  // tsx's ESM entry (its CommonJS one cannot register hooks from a worker's ESM bootstrap), as AsyncLLM's startWorker.
  const tsxApi = createRequire(import.meta.url).resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs');
  const entry = new URL(`./${name}.ts`, import.meta.url).href;
  const bootstrap =
    `import(${JSON.stringify(pathToFileURL(tsxApi).href)})` +
    `.then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return {
    url: new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`),
    execArgv: ['--conditions=@pagoda/source'],
  };
}

/**
 * Like {@link workerEntry}, for a module that a pool of child processes loads itself (tinypool): the built
 * `dist/<basename>.js`, or, running from source, the `.ts` file with tsx's hooks imported into the process first.
 */
export function workerModuleFile(name: string): { filename: string; execArgv: string[] } {
  const basename = name.slice(name.lastIndexOf('/') + 1);
  if (!import.meta.url.endsWith('.ts')) return { filename: fileURLToPath(new URL(`./${basename}.js`, import.meta.url)), execArgv: [] };
  const tsx = createRequire(import.meta.url).resolve('tsx');
  return { filename: fileURLToPath(new URL(`./${name}.ts`, import.meta.url)), execArgv: ['--import', tsx, '--conditions=@pagoda/source'] };
}

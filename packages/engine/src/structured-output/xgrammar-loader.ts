import type * as XGrammarNamespace from '@mlc-ai/web-xgrammar';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The part of `@mlc-ai/web-xgrammar` that the XGrammar backend uses. */
export type XGrammarModule = typeof XGrammarNamespace;

let loading: Promise<XGrammarModule> | undefined;
let captured: string[] | undefined;

/**
 * Loads XGrammar's WASM build once per thread. Its npm package is an Emscripten UMD bundle inside a `"type":
 * "module"` package, so Node loads it as ESM, where it finds no CommonJS `exports` and puts its API on
 * `globalThis.xgrammar`; and when its WASM module starts it computes its own location from `require('url')` and
 * `__filename`, which ESM lacks. The shim gives it both for as long as that takes, then takes them back:
 *
 * - from source (vitest, tsx) and from the built `dist/`, the package is a real dependency, loaded by Node;
 * - in an esbuild bundle (the GPU check's), it is inlined and wrapped as CommonJS, so its API comes back as the
 *   module's exports instead, and the bundle's banner supplies `require`; `__filename` still comes from here.
 *
 * The WASM binary is inlined in the bundle (a data URL), so the path only has to be a real file for `createRequire`.
 * Emscripten binds `console.error` when the module starts: the shim routes it through {@link captureXGrammarErrors}
 * so that a failed compilation's message (printed, then thrown as a bare "Aborted()") reaches the caller.
 */
export function loadXGrammar(): Promise<XGrammarModule> {
  return (loading ??= load());
}

async function load(): Promise<XGrammarModule> {
  const scope = globalThis as Record<string, unknown>;
  const hadRequire = 'require' in scope;
  const hadFilename = '__filename' in scope;
  const originalConsoleError = console.error;
  const requireHere = createRequire(import.meta.url);
  let location = fileURLToPath(import.meta.url);
  try {
    location = requireHere.resolve('@mlc-ai/web-xgrammar');
  } catch {
    // Bundled: the package is inlined and not installed beside us; our own file serves as the location.
  }
  if (!hadRequire) scope.require = requireHere;
  if (!hadFilename) scope.__filename = location;
  console.error = (...args: unknown[]) => {
    if (captured !== undefined) captured.push(args.map(String).join(' '));
    else originalConsoleError(...args);
  };
  try {
    const namespace = (await import('@mlc-ai/web-xgrammar')) as Partial<XGrammarModule> & { default?: Partial<XGrammarModule> };
    const module = (scope.xgrammar as XGrammarModule | undefined) ?? (namespace.TokenizerInfo ? namespace : namespace.default);
    if (module?.TokenizerInfo === undefined) throw new Error('@mlc-ai/web-xgrammar loaded but exported no TokenizerInfo');
    // Start the WASM module now, while the shim's globals are in place (it starts on its first call otherwise).
    (await module.TokenizerInfo.createTokenizerInfo(['a'], 'raw', false, 1)).dispose();
    return module as XGrammarModule;
  } finally {
    if (!hadRequire) delete scope.require;
    if (!hadFilename) delete scope.__filename;
    console.error = originalConsoleError;
  }
}

/**
 * Runs `work` with XGrammar's error output collected instead of printed, and returns it with the result or the
 * error: XGrammar's WASM build reports why a schema or grammar failed only on stderr.
 */
export async function captureXGrammarErrors<T>(work: () => Promise<T>): Promise<{ result?: T; error?: unknown; messages: string[] }> {
  const messages: string[] = [];
  captured = messages;
  try {
    return { result: await work(), messages };
  } catch (error) {
    return { error, messages };
  } finally {
    captured = undefined;
  }
}

import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ExecutionProviderError, PagodaEngineError } from './errors';
import { ModelFiles, type WeightFile } from './model/weight-file';

/** The ONNX Runtime execution providers the runner can be asked for. */
export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';

/** onnxruntime-node's own folder, wherever the package manager put it (pnpm keeps it under node_modules/.pnpm). */
function onnxRuntimePackageDir(): string | undefined {
  try {
    return dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  } catch {
    return undefined;
  }
}

/** What to run to fetch the CUDA provider, with the install script's real path. */
export function cudaInstallHint(): string {
  const script = join(onnxRuntimePackageDir() ?? 'node_modules/onnxruntime-node', 'script', 'install.js');
  return (
    'onnxruntime-node downloads the CUDA execution provider only when installed with ONNXRUNTIME_NODE_INSTALL=cuda12; ' +
    `run \`ONNXRUNTIME_NODE_INSTALL=cuda12 node ${script}\` (or \`ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node\` ` +
    'in an npm project), with CUDA 12 and cuDNN 9 on the library path'
  );
}

/**
 * Checks that `executionProvider` can be used before a session is made, so the error says why rather than ONNX
 * Runtime's generic "failed to create session".
 */
export function checkExecutionProvider(executionProvider: string): ExecutionProvider {
  if (executionProvider !== 'cpu' && executionProvider !== 'webgpu' && executionProvider !== 'cuda') {
    throw new ExecutionProviderError(
      executionProvider,
      `unknown execution provider ${JSON.stringify(executionProvider)}; choose cpu, webgpu or cuda`,
    );
  }
  const offered = ort.listSupportedBackends().some((backend) => backend.name === executionProvider);
  if (!offered) {
    throw new ExecutionProviderError(
      executionProvider,
      `this build of onnxruntime-node (${process.platform}-${process.arch}) has no ${executionProvider} execution provider`,
    );
  }
  if (executionProvider === 'cuda' && !cudaProviderInstalled()) {
    throw new ExecutionProviderError(
      executionProvider,
      `the CUDA execution provider binaries (libonnxruntime_providers_cuda) are missing: ${cudaInstallHint()}`,
    );
  }
  return executionProvider;
}

/** Whether onnxruntime-node's native folder holds the CUDA provider library its install script downloads. */
export function cudaProviderInstalled(): boolean {
  const packageDir = onnxRuntimePackageDir();
  if (packageDir === undefined) return false;
  const bindingDir = join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  if (!existsSync(bindingDir)) return false;
  return readdirSync(bindingDir).some((file) => file.includes('onnxruntime_providers_cuda'));
}

/** Wraps a session-creation failure on a non-CPU provider in an error that names the provider and the fix. */
export function executionProviderFailure(executionProvider: ExecutionProvider, error: unknown): ExecutionProviderError {
  const reason = (error as Error).message.trim();
  const hint =
    executionProvider === 'cuda'
      ? cudaInstallHint()
      : executionProvider === 'webgpu'
        ? 'WebGPU needs a GPU adapter (Dawn over Vulkan, Metal or D3D12) visible to this process'
        : 'the CPU execution provider should always load; this is a bug';
  return new ExecutionProviderError(
    executionProvider,
    `the ${executionProvider} execution provider could not start a session (${reason}); ${hint}`,
    { cause: error },
  );
}

/** How {@link startSession} sets up a session beyond its provider. */
export interface SessionSettings {
  /** The provider as ONNX Runtime takes it, when it needs options (CUDA's device id). */
  readonly provider?: { readonly name: string; readonly deviceId?: number };
  readonly intraOpNumThreads?: number;
  /** ONNX Runtime's session configuration entries (`session.*`), nested. */
  readonly extra?: Record<string, unknown>;
  /**
   * The folder the model and its weight file are written to, when several sessions share the weights; its owner
   * removes it once they have started. Without it the session gets a folder of its own, removed once it started.
   */
  readonly files?: ModelFiles;
}

/**
 * A runner's session over a built graph, with full optimization and one inter-op thread; a provider other than the
 * CPU that fails to start is reported as {@link executionProviderFailure} says. The graph's weight file is written
 * beside the model first (see WeightFile): ONNX Runtime maps it rather than copying weights out of JavaScript.
 */
export async function startSession(
  graph: { readonly model: Uint8Array; readonly weights: WeightFile },
  executionProvider: ExecutionProvider,
  settings: SessionSettings = {},
): Promise<ort.InferenceSession> {
  if (settings.files !== undefined && settings.files.weights !== graph.weights) {
    throw new RangeError('the graph was built on another weight file than the one it is to be written with');
  }
  const files = settings.files ?? (await ModelFiles.create(graph.weights));
  try {
    const modelPath = await files.writeModel(graph.model);
    return await ort.InferenceSession.create(modelPath, {
      executionProviders: [settings.provider ?? executionProvider],
      graphOptimizationLevel: 'all',
      ...(settings.intraOpNumThreads === undefined ? {} : { intraOpNumThreads: settings.intraOpNumThreads }),
      interOpNumThreads: 1,
      ...(settings.extra === undefined ? {} : { extra: settings.extra }),
    });
  } catch (error) {
    if (executionProvider === 'cpu' || !(error instanceof Error) || PagodaEngineError.isInstance(error)) throw error;
    throw executionProviderFailure(executionProvider, error);
  } finally {
    if (settings.files === undefined) await files.remove();
  }
}

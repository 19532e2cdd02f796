import * as ort from 'onnxruntime-node';
import { cudaProviderInstalled } from './execution-provider';

/** The ONNX Runtime execution providers this installation of onnxruntime-node offers (always including `cpu`). */
export function availableExecutionProviders(): string[] {
  // onnxruntime-node offers `cuda` on Linux x64 whether or not its CUDA provider library was ever downloaded.
  return ort.listSupportedBackends()
    .map((backend) => backend.name)
    .filter((name) => name !== 'cuda' || cudaProviderInstalled());
}

/** The onnxruntime-node version in use. */
export function onnxRuntimeVersion(): string {
  return ort.env.versions.common;
}

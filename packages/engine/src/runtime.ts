import * as ort from 'onnxruntime-node';

/** The ONNX Runtime execution providers this installation of onnxruntime-node offers (always including `cpu`). */
export function availableExecutionProviders(): string[] {
  return ort.listSupportedBackends().map((backend) => backend.name);
}

/** The onnxruntime-node version in use. */
export function onnxRuntimeVersion(): string {
  return ort.env.versions.common;
}

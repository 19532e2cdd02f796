import { describe, expect, it } from 'vitest';
import { availableExecutionProviders, cudaProviderInstalled, onnxRuntimeVersion } from './index';

describe('ONNX Runtime', () => {
  it('loads the native binding and offers the CPU execution provider', () => {
    expect(availableExecutionProviders()).toContain('cpu');
    expect(onnxRuntimeVersion()).toMatch(/^1\.\d+\.\d+/);
  });

  it('lists cuda only where its provider library is installed', () => {
    expect(availableExecutionProviders().includes('cuda')).toBe(cudaProviderInstalled());
  });

});

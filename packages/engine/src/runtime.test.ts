import { describe, expect, it } from 'vitest';
import { availableExecutionProviders, onnxRuntimeVersion } from './index';

describe('ONNX Runtime', () => {
  it('loads the native binding and offers the CPU execution provider', () => {
    expect(availableExecutionProviders()).toContain('cpu');
    expect(onnxRuntimeVersion()).toMatch(/^1\.\d+\.\d+/);
  });
});

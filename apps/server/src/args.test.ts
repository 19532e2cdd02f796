import { describe, expect, it } from 'vitest';
import { defaultModelDir, parseServeArgs, UsageError } from './args';

describe('pagoda serve arguments', () => {
  it('defaults to the built-in model on 127.0.0.1:8000 with vLLM’s defaults left to the engine', () => {
    expect(parseServeArgs([], {})).toEqual({
      model: defaultModelDir,
      host: '127.0.0.1',
      port: 8000,
      servedModelName: undefined,
      apiKey: undefined,
      allowedOrigins: ['*'],
      chatTemplate: undefined,
      maxWaitingRequests: undefined,
      engine: {},
    });
  });

  it('maps every deployment flag to its engine option', () => {
    const options = parseServeArgs(
      [
        '--device', 'cpu', '--gpu-memory-utilization', '0.8', '--kv-cache-memory', '2GiB', '--max-num-seqs', '64',
        '--max-num-batched-tokens', '4096', '--max-model-len', '2048', '--block-size', '32', '--no-enable-prefix-caching',
        '--tensor-parallel-size', '1', '--pipeline-parallel-size', '1', '--generation-config', 'vllm', '--max-logprobs', '5',
        '--api-key', 'k', '--max-waiting-requests', '10', '--allowed-origins', 'https://a.test,https://b.test',
        '--dtype', 'float32', '--model-runner', 'paged-reference',
      ],
      {},
    );
    expect(options.engine).toEqual({
      device: 'cpu',
      dtype: 'float32',
      modelRunner: 'paged-reference',
      gpuMemoryUtilization: 0.8,
      kvCacheMemory: '2GiB',
      maxNumSeqs: 64,
      maxNumBatchedTokens: 4096,
      maxModelLen: 2048,
      blockSize: 32,
      enablePrefixCaching: false,
      tensorParallelSize: 1,
      pipelineParallelSize: 1,
      generationConfig: 'vllm',
      maxLogprobs: 5,
    });
    expect(options).toMatchObject({ apiKey: 'k', maxWaitingRequests: 10, allowedOrigins: ['https://a.test', 'https://b.test'] });
  });

  it('takes a GGUF model with its tokenizer folder, and the quantization flags', () => {
    const options = parseServeArgs(['--model', 'm.gguf', '--tokenizer', 'tok', '--quantization', 'int4', '--accuracy-level', '1'], {});
    expect(options.model).toBe('m.gguf');
    expect(options.engine).toEqual({ tokenizer: 'tok', quantization: 'int4', accuracyLevel: 1 });
    expect(() => parseServeArgs(['--accuracy-level', 'high'], {})).toThrow(/--accuracy-level must be an integer, got "high"/);
  });

  it('takes the API key from PAGODA_API_KEY', () => {
    expect(parseServeArgs([], { PAGODA_API_KEY: 'from-env' }).apiKey).toBe('from-env');
  });

  it.each([
    [['--modle', 'x'], /Unknown option '--modle'/],
    [['--port', '70000'], /--port must be an integer in \[0, 65535\], got 70000/],
    [['--max-num-seqs', 'many'], /--max-num-seqs must be an integer, got "many"/],
    [['--gpu-memory-utilization', 'lots'], /--gpu-memory-utilization must be a number in \(0, 1\], got "lots"/],
    [['--enable-prefix-caching', '--no-enable-prefix-caching'], /contradict each other/],
    [['--max-waiting-requests=-1'], /--max-waiting-requests must be a non-negative integer/],
  ])('refuses %j with a usage error', (argv, message) => {
    expect(() => parseServeArgs(argv, {})).toThrow(UsageError);
    expect(() => parseServeArgs(argv, {})).toThrow(message);
  });
});

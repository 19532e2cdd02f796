import { describe, expect, it } from 'vitest';
import { defaultModelDir, parseServeArgs, readChatTemplateOption, UsageError } from './args';

describe('pagoda serve arguments', () => {
  it('defaults to the built-in model on 127.0.0.1:8000 with vLLM’s defaults left to the engine', () => {
    expect(parseServeArgs([], {})).toEqual({
      model: defaultModelDir,
      host: '127.0.0.1',
      port: 8000,
      servedModelName: undefined,
      apiKey: undefined,
      allowedOrigins: undefined,
      allowedMethods: undefined,
      allowedHeaders: undefined,
      allowCredentials: false,
      chatTemplate: undefined,
      trustRequestChatTemplate: false,
      maxWaitingRequests: undefined,
      timeoutKeepAlive: 5,
      timeoutGracefulShutdown: 30,
      limitConcurrency: undefined,
      toolCallParser: undefined,
      enableAutoToolChoice: false,
      reasoningParser: undefined,
      vllmCompatibleMetrics: false,
      logLevel: 'info',
      logFormat: 'auto',
      disableLogRequests: false,
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
        '--dtype', 'float32', '--model-runner', 'paged-reference', '--tokenizer-pool-size', '3', '--tokenizer-pool-timeout', '2.5',
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
      tokenizerPoolSize: 3,
      tokenizerPoolTimeoutMs: 2500,
    });
    expect(options).toMatchObject({ apiKey: 'k', maxWaitingRequests: 10, allowedOrigins: ['https://a.test', 'https://b.test'] });
  });

  it('reads the HTTP hardening flags', () => {
    const options = parseServeArgs([
      '--allowed-origins', '*', '--allowed-methods', 'GET,POST', '--allowed-headers', 'authorization', '--allow-credentials',
      '--trust-request-chat-template', '--timeout-keep-alive', '2', '--timeout-graceful-shutdown', '0.5', '--limit-concurrency', '64',
      '--log-level', 'warn', '--log-format', 'json', '--disable-log-requests',
    ], {});
    expect(options).toMatchObject({
      allowedOrigins: ['*'],
      allowedMethods: ['GET', 'POST'],
      allowedHeaders: ['authorization'],
      allowCredentials: true,
      trustRequestChatTemplate: true,
      timeoutKeepAlive: 2,
      timeoutGracefulShutdown: 0.5,
      limitConcurrency: 64,
      logLevel: 'warn',
      logFormat: 'json',
      disableLogRequests: true,
    });
    expect(parseServeArgs(['--allowed-origins', 'none'], {}).allowedOrigins).toEqual([]);
  });

  it('reads --chat-template as vLLM does: a path when it has no braces or newline, which must exist; else the text', () => {
    const here = new URL('.', import.meta.url).pathname;
    expect(readChatTemplateOption('{{ messages[0].content }}')).toBe('{{ messages[0].content }}');
    expect(readChatTemplateOption('line one\nline two')).toBe('line one\nline two');
    expect(readChatTemplateOption('args.test.ts', here)).toMatch(/reads --chat-template as vLLM does/);
    expect(() => readChatTemplateOption('templates/missing.jinja', here)).toThrow(UsageError);
    expect(() => readChatTemplateOption('templates/missing.jinja', here)).toThrow(/--chat-template "templates\/missing.jinja" names no readable file \(ENOENT\)/);
  });

  it('reads --runner and --pooler-config, refusing what is not vLLM\'s pooler JSON', () => {
    const options = parseServeArgs(['--runner', 'pooling', '--pooler-config', '{"pooling_type": "MEAN", "normalize": false}'], {});
    expect(options.engine).toMatchObject({ runner: 'pooling', poolerConfig: { pooling_type: 'MEAN', normalize: false } });
    expect(() => parseServeArgs(['--pooler-config', 'mean'], {})).toThrow(/--pooler-config must be a JSON object, got "mean"/);
    expect(() => parseServeArgs(['--pooler-config', '{"dimension": 3}'], {})).toThrow(/--pooler-config takes pooling_type and normalize, got dimension/);
    expect(() => parseServeArgs(['--pooler-config', '{"normalize": "yes"}'], {})).toThrow(/normalize must be true or false/);
  });

  it('reads the tool, reasoning and structured-output flags', () => {
    const options = parseServeArgs(['--tool-call-parser', 'hermes', '--enable-auto-tool-choice', '--reasoning-parser', 'qwen3', '--structured-outputs-config', '{"disable_any_whitespace": true}'], {});
    expect(options).toMatchObject({ toolCallParser: 'hermes', enableAutoToolChoice: true, reasoningParser: 'qwen3' });
    expect(options.engine).toMatchObject({ reasoningParser: 'qwen3', structuredOutputsConfig: { disableAnyWhitespace: true } });
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
    [['--max-num-seqs', '-3'], /--max-num-seqs must be a positive integer, got -3/],
    [['--max-model-len', '0'], /--max-model-len must be a positive integer, got 0/],
    [['--timeout-keep-alive', '0'], /--timeout-keep-alive must be a positive number of seconds, got "0"/],
    [['--timeout-graceful-shutdown', 'soon'], /--timeout-graceful-shutdown must be a positive number of seconds/],
    [['--limit-concurrency', '0'], /--limit-concurrency must be a positive integer, got 0/],
    [['--log-level', 'loud'], /--log-level must be one of/],
    [['--log-format', 'xml'], /--log-format must be auto, json or text/],
    [['--tool-call-parser', 'pythonic'], /--tool-call-parser must be one of hermes, llama3_json, mistral/],
    [['--structured-outputs-config', 'yes'], /--structured-outputs-config must be a JSON object/],
    [['--structured-outputs-config', '{"backend": "guidance"}'], /takes disable_any_whitespace, got backend/],
  ])('refuses %j with a usage error', (argv, message) => {
    expect(() => parseServeArgs(argv, {})).toThrow(UsageError);
    expect(() => parseServeArgs(argv, {})).toThrow(message);
  });
});

import type { EngineOptions } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** Everything `pagoda serve` takes: where to listen, how to serve, and the engine's deployment options. */
export interface ServeOptions {
  model: string;
  host: string;
  port: number;
  servedModelName: string | undefined;
  apiKey: string | undefined;
  /** CORS origins; undefined: pages on localhost, 127.0.0.1 and [::1] only. */
  allowedOrigins: string[] | undefined;
  allowedMethods: string[] | undefined;
  allowedHeaders: string[] | undefined;
  allowCredentials: boolean;
  /** `--chat-template`: a file's path (read at start) or the template's text. */
  chatTemplate: string | undefined;
  trustRequestChatTemplate: boolean;
  maxWaitingRequests: number | undefined;
  /** Seconds an idle keep-alive connection stays open. */
  timeoutKeepAlive: number;
  /** Seconds in-flight requests get to finish at shutdown before they are cut. */
  timeoutGracefulShutdown: number;
  /** Most connections open at once. */
  limitConcurrency: number | undefined;
  /** vLLM's `--tool-call-parser`; undefined: the one the chat template implies. */
  toolCallParser: string | undefined;
  enableAutoToolChoice: boolean;
  /** vLLM's `--reasoning-parser` (also given to the engine, so constraints start after the reasoning). */
  reasoningParser: string | undefined;
  /** Also export the metrics under vLLM's names, labels and buckets. */
  vllmCompatibleMetrics: boolean;
  logLevel: string;
  logFormat: 'auto' | 'json' | 'text';
  disableLogRequests: boolean;
  engine: EngineOptions;
}

/** Thrown for a command line that cannot be run; the CLI prints the message and exits with status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The built-in default model: the tiny Qwen2 checkpoint that ships with the repository. */
export const defaultModelDir = fixturePath('tiny-qwen2');

export const usage = `Usage: pagoda serve [options]

Serving
  --model DIR|FILE.gguf          Hugging Face checkpoint folder, or a GGUF file (default: the built-in tiny-qwen2)
  --tokenizer DIR                the folder of tokenizer.json and generation_config.json (default: the model's;
                                 required with a GGUF file)
  --host HOST                    address to listen on (default 127.0.0.1)
  --port PORT                    port to listen on (default 8000; 0 picks a free one)
  --served-model-name NAME       the model name clients use (default: the folder's name)
  --api-key KEY                  require "Authorization: Bearer KEY" on /v1/* (or set PAGODA_API_KEY)
  --allowed-origins LIST         CORS origins, comma-separated, or * for any (default: pages on localhost,
                                 127.0.0.1 and [::1], any port; "none" sends no CORS headers)
  --allowed-methods LIST         methods CORS preflights may ask for (default GET,HEAD,POST)
  --allowed-headers LIST         headers CORS preflights may ask for (default *: whatever they ask)
  --allow-credentials            let CORS requests carry credentials
  --chat-template FILE|TEMPLATE  a Jinja chat template replacing the model's: a path when the value has no {, }
                                 or newline (it must exist), the template's text otherwise
  --trust-request-chat-template  let requests bring their own chat_template (default: refused with 400)
  --max-waiting-requests N       answer 429 beyond N sequences waiting for their first token (default no limit)
  --timeout-keep-alive SECONDS   close idle keep-alive connections after this long (default 5)
  --timeout-graceful-shutdown SECONDS   on SIGTERM, let requests finish this long before cutting them (default 30;
                                 exit status 3 when some were cut)
  --limit-concurrency N          most connections open at once; more are refused (default 2048)
  --log-level LEVEL              fatal, error, warn, info (default), debug, trace or silent
  --log-format auto|json|text    json lines (pino), or text; auto: text on a terminal, json otherwise
  --disable-log-requests         no log line per request
  --vllm-compatible-metrics      /metrics also under vLLM's names and labels (vllm:num_requests_waiting, ...), for
                                 vLLM's dashboards and the routers that balance vLLM replicas by them

Tools, reasoning and structured outputs (as vLLM)
  --tool-call-parser hermes|llama3_json|mistral   how tool calls are read and forced (default: the one the model's
                                 chat template implies, e.g. hermes for Qwen's <tool_call>)
  --enable-auto-tool-choice      tool_choice "auto" (the default with tools) reads calls from the output
  --reasoning-parser qwen3|deepseek_r1   <think>…</think> becomes reasoning_content; constraints start after it
  --structured-outputs-config JSON   e.g. '{"disable_any_whitespace": true}': JSON without free whitespace

Tokenizer pool (chat templates and tokenization run in worker processes, off the event loop)
  --tokenizer-pool-size N        worker processes (default 2), each with its own copy of the tokenizer
  --tokenizer-pool-timeout SECONDS   the most one rendering or tokenization may take (default 10); over it: 400

Engine (as vLLM's engine arguments)
  --device cpu|cuda|webgpu       execution provider (default cpu); a GPU keeps the paged KV cache on the device
  --dtype auto|float32|float16|bfloat16   weights and KV cache (default auto: float32 on the CPU, float16 on a GPU)
  --gpu-memory-utilization F     fraction of GPU memory to use, in (0, 1] (default 0.9)
  --kv-cache-memory SIZE         KV cache size, bytes or with a unit: 4GiB (CPU default: min(4 GiB, free/4);
                                 on a GPU it replaces the plan profiled from --gpu-memory-utilization)
  --max-num-seqs N               most requests running at once (default 256)
  --max-num-batched-tokens N     most tokens per step (default 2048)
  --max-model-len N              longest sequence, prompt + output (default: the model's)
  --block-size N                 tokens per KV block (default 16; on CUDA what paged FlashAttention wants)
  --enable-prefix-caching / --no-enable-prefix-caching   automatic prefix caching (default on)
  --tensor-parallel-size N       tensor-parallel ranks (default 1)
  --pipeline-parallel-size N     pipeline stages (default 1)
  --generation-config auto|vllm  auto: sampling defaults from generation_config.json (default auto)
  --max-logprobs N               most logprobs a request may ask for (default 20)
  --runner auto|generate|pooling   pooling: serve /v1/embeddings instead of text (default auto: generate)
  --pooler-config JSON           e.g. '{"pooling_type": "MEAN", "normalize": false}' (default: the checkpoint's
                                 sentence-transformers config, else the last token, normalized)
  --load-format safetensors|dummy   dummy: seeded random weights from config.json alone (default safetensors)
  --quantization int8|int4       weight-only quantization at load, as llama.cpp's Q8_0 / Q4_0 (MatMulNBits)
  --accuracy-level N             MatMulNBits accuracy_level, 0-4 (default 4: int8 activations)
  --seed N                       seed of the dummy weights (default 0)
  --intra-op-num-threads N       ONNX Runtime threads (default: one per core)
  --scheduling-policy fcfs|priority   first come first served, or by each request's priority (default fcfs)
  --long-prefill-token-threshold N   most tokens of one prompt per step (default 0: no cap)
  --model-runner auto|paged-reference   paged-reference: the GPU graph on the CPU, for checking without a GPU
                                 (default auto)

  --version                      print the version
  --help                         print this`;

const integerFlags = [
  'port',
  'max-num-seqs',
  'max-num-batched-tokens',
  'max-model-len',
  'block-size',
  'tensor-parallel-size',
  'pipeline-parallel-size',
  'max-logprobs',
  'max-waiting-requests',
  'seed',
  'intra-op-num-threads',
  'long-prefill-token-threshold',
  'limit-concurrency',
  'tokenizer-pool-size',
  'accuracy-level',
] as const;

/** Flags that take a number of seconds (fractions allowed). */
const secondsFlags = ['timeout-keep-alive', 'timeout-graceful-shutdown', 'tokenizer-pool-timeout'] as const;

function integer(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`--${flag} must be an integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

/**
 * A flag's JSON object value (vLLM's config flags), or a UsageError naming the flag: not a JSON object, or a key
 * other than `keys`.
 */
function jsonObjectFlag(flag: string, value: string, keys: readonly string[]): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`--${flag} must be a JSON object, got ${JSON.stringify(value)}`);
  }
  const unknown = Object.keys(parsed).filter((key) => !keys.includes(key));
  if (unknown.length > 0) throw new UsageError(`--${flag} takes ${keys.join(' and ')}, got ${unknown.join(', ')}`);
  return parsed as Record<string, unknown>;
}

/** `--pooler-config`: vLLM's JSON (`{"pooling_type": "MEAN", "normalize": false}`), checked by the engine. */
function poolerConfig(value: string | undefined): EngineOptions['poolerConfig'] {
  if (value === undefined) return undefined;
  const { pooling_type: poolingType, normalize } = jsonObjectFlag('pooler-config', value, ['pooling_type', 'normalize']);
  if (poolingType !== undefined && typeof poolingType !== 'string') {
    throw new UsageError(`--pooler-config pooling_type must be a string, got ${JSON.stringify(poolingType)}`);
  }
  if (normalize !== undefined && typeof normalize !== 'boolean') {
    throw new UsageError(`--pooler-config normalize must be true or false, got ${JSON.stringify(normalize)}`);
  }
  return { ...(poolingType === undefined ? {} : { pooling_type: poolingType }), ...(normalize === undefined ? {} : { normalize }) };
}

/** `--structured-outputs-config`: vLLM's JSON (`{"disable_any_whitespace": true}`) as the engine option. */
function structuredOutputsConfig(value: string | undefined): EngineOptions['structuredOutputsConfig'] {
  if (value === undefined) return undefined;
  const { disable_any_whitespace: disableAnyWhitespace } = jsonObjectFlag('structured-outputs-config', value, ['disable_any_whitespace']);
  return { ...(disableAnyWhitespace === undefined ? {} : { disableAnyWhitespace: disableAnyWhitespace as boolean }) };
}

function positiveSeconds(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`--${flag} must be a positive number of seconds, got ${JSON.stringify(value)}`);
  return seconds;
}

/**
 * `--chat-template` as vLLM reads it: a value without `{`, `}` or a newline is a file's path, which must exist;
 * anything else is the template's own text.
 */
export function readChatTemplateOption(value: string | undefined, cwd = process.cwd()): string | undefined {
  if (value === undefined) return undefined;
  if (/[{}\n]/.test(value)) return value;
  const file = resolve(cwd, value);
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--chat-template ${JSON.stringify(value)} names no readable file (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): give a template file's path, or the template's text`);
  }
}

/**
 * `--flag -3` as `--flag=-3`, for flags that take a value: node's parser reads a value that starts with `-` as an
 * option ("argument is ambiguous"), where the flag's own check would say what a valid value is.
 */
function joinNegativeValues(argv: readonly string[], valueFlags: ReadonlySet<string>): string[] {
  const joined: string[] = [];
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index]!;
    const next = argv[index + 1];
    if (valueFlags.has(argument) && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${argument}=${next}`);
      index += 1;
    } else joined.push(argument);
  }
  return joined;
}

export function parseServeArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ServeOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: joinNegativeValues(argv, new Set([...integerFlags, ...secondsFlags, 'gpu-memory-utilization'].map((flag) => `--${flag}`))),
      options: {
        model: { type: 'string' },
        host: { type: 'string' },
        'served-model-name': { type: 'string' },
        'api-key': { type: 'string' },
        'allowed-origins': { type: 'string' },
        'allowed-methods': { type: 'string' },
        'allowed-headers': { type: 'string' },
        'allow-credentials': { type: 'boolean' },
        'chat-template': { type: 'string' },
        'trust-request-chat-template': { type: 'boolean' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        'disable-log-requests': { type: 'boolean' },
        'vllm-compatible-metrics': { type: 'boolean' },
        'tool-call-parser': { type: 'string' },
        'enable-auto-tool-choice': { type: 'boolean' },
        'reasoning-parser': { type: 'string' },
        'structured-outputs-config': { type: 'string' },
        runner: { type: 'string' },
        'pooler-config': { type: 'string' },
        device: { type: 'string' },
        dtype: { type: 'string' },
        'model-runner': { type: 'string' },
        'gpu-memory-utilization': { type: 'string' },
        'kv-cache-memory': { type: 'string' },
        'enable-prefix-caching': { type: 'boolean' },
        'no-enable-prefix-caching': { type: 'boolean' },
        'generation-config': { type: 'string' },
        'load-format': { type: 'string' },
        'scheduling-policy': { type: 'string' },
        tokenizer: { type: 'string' },
        quantization: { type: 'string' },
        ...Object.fromEntries([...integerFlags, ...secondsFlags].map((flag) => [flag, { type: 'string' as const }])),
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const string = (flag: string) => values[flag] as string | undefined;
  const numbers = Object.fromEntries(integerFlags.map((flag) => [flag, integer(flag, string(flag))])) as Record<(typeof integerFlags)[number], number | undefined>;
  for (const flag of ['max-num-seqs', 'max-num-batched-tokens', 'max-model-len', 'tensor-parallel-size', 'pipeline-parallel-size', 'intra-op-num-threads'] as const) {
    const value = numbers[flag];
    if (value !== undefined && value < 1) throw new UsageError(`--${flag} must be a positive integer, got ${value}`);
  }
  const port = numbers.port ?? 8000;
  if (port < 0 || port > 65535) throw new UsageError(`--port must be an integer in [0, 65535], got ${port}`);
  const gpuMemoryUtilizationText = string('gpu-memory-utilization');
  let gpuMemoryUtilization: number | undefined;
  if (gpuMemoryUtilizationText !== undefined) {
    gpuMemoryUtilization = Number(gpuMemoryUtilizationText);
    if (gpuMemoryUtilizationText.trim() === '' || !Number.isFinite(gpuMemoryUtilization)) {
      throw new UsageError(`--gpu-memory-utilization must be a number in (0, 1], got ${JSON.stringify(gpuMemoryUtilizationText)}`);
    }
  }
  if (values['enable-prefix-caching'] === true && values['no-enable-prefix-caching'] === true) {
    throw new UsageError('--enable-prefix-caching and --no-enable-prefix-caching contradict each other');
  }
  const maxWaitingRequests = numbers['max-waiting-requests'];
  if (maxWaitingRequests !== undefined && maxWaitingRequests < 0) {
    throw new UsageError(`--max-waiting-requests must be a non-negative integer, got ${maxWaitingRequests}`);
  }
  const seconds = Object.fromEntries(secondsFlags.map((flag) => [flag, positiveSeconds(flag, string(flag))])) as Record<(typeof secondsFlags)[number], number | undefined>;
  const list = (flag: string) => string(flag)?.split(',').map((item) => item.trim()).filter(Boolean);
  const origins = string('allowed-origins');
  for (const flag of ['limit-concurrency', 'tokenizer-pool-size'] as const) {
    const value = numbers[flag];
    if (value !== undefined && value < 1) throw new UsageError(`--${flag} must be a positive integer, got ${value}`);
  }
  const logLevel = string('log-level') ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new UsageError(`--log-level must be one of fatal, error, warn, info, debug, trace, silent, got ${JSON.stringify(logLevel)}`);
  }
  const logFormat = string('log-format') ?? 'auto';
  if (logFormat !== 'auto' && logFormat !== 'json' && logFormat !== 'text') {
    throw new UsageError(`--log-format must be auto, json or text, got ${JSON.stringify(logFormat)}`);
  }
  const engine: EngineOptions = {};
  const set = <K extends keyof EngineOptions>(key: K, value: EngineOptions[K] | undefined) => {
    if (value !== undefined) engine[key] = value;
  };
  set('device', string('device') as EngineOptions['device']);
  set('dtype', string('dtype') as EngineOptions['dtype']);
  set('modelRunner', string('model-runner') as EngineOptions['modelRunner']);
  set('gpuMemoryUtilization', gpuMemoryUtilization);
  set('kvCacheMemory', string('kv-cache-memory'));
  set('maxNumSeqs', numbers['max-num-seqs']);
  set('maxNumBatchedTokens', numbers['max-num-batched-tokens']);
  set('maxModelLen', numbers['max-model-len']);
  set('blockSize', numbers['block-size']);
  set('enablePrefixCaching', values['no-enable-prefix-caching'] === true ? false : values['enable-prefix-caching'] === true ? true : undefined);
  set('tensorParallelSize', numbers['tensor-parallel-size']);
  set('pipelineParallelSize', numbers['pipeline-parallel-size']);
  set('generationConfig', string('generation-config') as EngineOptions['generationConfig']);
  set('maxLogprobs', numbers['max-logprobs']);
  set('loadFormat', string('load-format') as EngineOptions['loadFormat']);
  set('seed', numbers.seed);
  set('intraOpNumThreads', numbers['intra-op-num-threads']);
  set('schedulingPolicy', string('scheduling-policy') as EngineOptions['schedulingPolicy']);
  set('longPrefillTokenThreshold', numbers['long-prefill-token-threshold']);
  set('tokenizerPoolSize', numbers['tokenizer-pool-size']);
  set('reasoningParser', string('reasoning-parser') as EngineOptions['reasoningParser']);
  set('structuredOutputsConfig', structuredOutputsConfig(string('structured-outputs-config')));
  set('runner', string('runner') as EngineOptions['runner']);
  set('poolerConfig', poolerConfig(string('pooler-config')));
  const toolCallParser = string('tool-call-parser');
  if (toolCallParser !== undefined && !['hermes', 'llama3_json', 'mistral'].includes(toolCallParser)) {
    throw new UsageError(`--tool-call-parser must be one of hermes, llama3_json, mistral, got ${JSON.stringify(toolCallParser)}`);
  }
  set('tokenizerPoolTimeoutMs', seconds['tokenizer-pool-timeout'] === undefined ? undefined : Math.ceil(seconds['tokenizer-pool-timeout'] * 1000));
  set('tokenizer', string('tokenizer'));
  set('quantization', string('quantization') as EngineOptions['quantization']);
  set('accuracyLevel', numbers['accuracy-level'] as EngineOptions['accuracyLevel']);
  return {
    model: string('model') ?? defaultModelDir,
    host: string('host') ?? '127.0.0.1',
    port,
    servedModelName: string('served-model-name'),
    apiKey: string('api-key') ?? env.PAGODA_API_KEY,
    allowedOrigins: origins === undefined ? undefined : origins === 'none' ? [] : list('allowed-origins'),
    allowedMethods: list('allowed-methods'),
    allowedHeaders: list('allowed-headers'),
    allowCredentials: values['allow-credentials'] === true,
    chatTemplate: string('chat-template'),
    trustRequestChatTemplate: values['trust-request-chat-template'] === true,
    maxWaitingRequests,
    timeoutKeepAlive: seconds['timeout-keep-alive'] ?? 5,
    timeoutGracefulShutdown: seconds['timeout-graceful-shutdown'] ?? 30,
    limitConcurrency: numbers['limit-concurrency'],
    toolCallParser,
    enableAutoToolChoice: values['enable-auto-tool-choice'] === true,
    reasoningParser: string('reasoning-parser'),
    vllmCompatibleMetrics: values['vllm-compatible-metrics'] === true,
    logLevel,
    logFormat,
    disableLogRequests: values['disable-log-requests'] === true,
    engine,
  };
}

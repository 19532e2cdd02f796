import type { EngineOptions } from '@pagoda/engine';
import { fixturePath } from '@pagoda/fixtures';
import { parseArgs } from 'node:util';

/** Everything `pagoda serve` takes: where to listen, how to serve, and the engine's deployment options. */
export interface ServeOptions {
  model: string;
  host: string;
  port: number;
  servedModelName: string | undefined;
  apiKey: string | undefined;
  allowedOrigins: string[];
  chatTemplate: string | undefined;
  maxWaitingRequests: number | undefined;
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
  --allowed-origins LIST         CORS origins, comma-separated (default *; "none" sends no CORS headers)
  --chat-template FILE|TEMPLATE  a Jinja chat template replacing the model's
  --max-waiting-requests N       answer 429 beyond N requests waiting for their first token

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
  --load-format safetensors|dummy   dummy: seeded random weights from config.json alone
  --quantization int8|int4       weight-only quantization at load, as llama.cpp's Q8_0 / Q4_0 (MatMulNBits)
  --accuracy-level N             MatMulNBits accuracy_level, 0-4 (default 4: int8 activations)
  --seed N                       seed of the dummy weights (default 0)
  --intra-op-num-threads N       ONNX Runtime threads (default: one per core)
  --scheduling-policy fcfs|priority
  --long-prefill-token-threshold N
  --model-runner auto|paged-reference   paged-reference: the GPU graph on the CPU, for checking without a GPU`;

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
  'accuracy-level',
] as const;

function integer(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`--${flag} must be an integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

export function parseServeArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ServeOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        model: { type: 'string' },
        host: { type: 'string' },
        'served-model-name': { type: 'string' },
        'api-key': { type: 'string' },
        'allowed-origins': { type: 'string' },
        'chat-template': { type: 'string' },
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
        ...Object.fromEntries(integerFlags.map((flag) => [flag, { type: 'string' as const }])),
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const string = (flag: string) => values[flag] as string | undefined;
  const numbers = Object.fromEntries(integerFlags.map((flag) => [flag, integer(flag, string(flag))])) as Record<(typeof integerFlags)[number], number | undefined>;
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
  const origins = string('allowed-origins') ?? '*';
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
  set('tokenizer', string('tokenizer'));
  set('quantization', string('quantization') as EngineOptions['quantization']);
  set('accuracyLevel', numbers['accuracy-level'] as EngineOptions['accuracyLevel']);
  return {
    model: string('model') ?? defaultModelDir,
    host: string('host') ?? '127.0.0.1',
    port,
    servedModelName: string('served-model-name'),
    apiKey: string('api-key') ?? env.PAGODA_API_KEY,
    allowedOrigins: origins === 'none' ? [] : origins.split(',').map((origin) => origin.trim()).filter(Boolean),
    chatTemplate: string('chat-template'),
    maxWaitingRequests,
    engine,
  };
}

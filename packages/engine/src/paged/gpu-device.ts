import { execFileSync } from 'node:child_process';
import { formatBytes } from '@pagoda/kv-cache';
import { PagodaEngineError } from '../errors';

const MiB = 2 ** 20;

const kvCacheMemoryHint =
  "nvidia-smi is needed to plan the KV cache on a GPU; --kv-cache-memory sets the KV cache's size without it";

/** One GPU as nvidia-smi reports it. Memory is in bytes; `index` is nvidia-smi's (physical) index. */
export interface GpuDeviceInfo {
  index: number;
  name: string;
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  /** `[major, minor]`, e.g. `[9, 0]` for sm_90; undefined when the driver does not report it. */
  computeCapability: [number, number] | undefined;
}

/** nvidia-smi is missing, failed, or printed something this module cannot read; the message says what and why. */
export class GpuProbeError extends PagodaEngineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('gpu_probe_failed', message, options);
    this.name = 'GpuProbeError';
  }
}

/** The GPU has too little memory for what was asked of it (the start-up check, or no room left for a KV cache). */
export class GpuMemoryError extends PagodaEngineError {
  /** Bytes the configuration needs. */
  readonly neededBytes: number;
  /** Bytes the device or the budget offers. */
  readonly availableBytes: number;

  constructor(message: string, neededBytes: number, availableBytes: number) {
    super('gpu_memory_insufficient', message);
    this.name = 'GpuMemoryError';
    this.neededBytes = neededBytes;
    this.availableBytes = availableBytes;
  }
}

/** The arguments {@link nvidiaSmiProbe} passes to list the devices; {@link parseNvidiaSmiDevices} reads the output. */
export const nvidiaSmiDeviceArgs: readonly string[] = [
  '--query-gpu=index,name,memory.total,memory.used,memory.free,compute_cap',
  '--format=csv,noheader,nounits',
];

/** The arguments {@link nvidiaSmiProbe} passes to list compute processes; {@link parseNvidiaSmiProcessMemory} reads them. */
export const nvidiaSmiProcessArgs: readonly string[] = ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'];

/** nvidia-smi's spellings of a value it does not have. */
function notAvailable(field: string): boolean {
  return /^\[?(n\/a|not supported|unknown error|insufficient permissions)\]?$/i.test(field);
}

function csvLines(csv: string): string[] {
  return csv
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

function parseMiB(field: string): number | undefined {
  if (!/^\d+(\.\d+)?$/.test(field)) return undefined;
  return Math.round(Number(field) * MiB);
}

/**
 * Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.used,memory.free,compute_cap
 * --format=csv,noheader,nounits`: one device a line, memory in MiB, compute_cap like `9.0`. The compute capability is
 * undefined when it reads `[N/A]` or when the line lacks it (drivers older than 510 have no compute_cap field). A name
 * holding a comma is kept whole: the fields are read from both ends. Empty lines are skipped.
 *
 * @throws {GpuProbeError} on a line that does not have that shape, quoting it.
 */
export function parseNvidiaSmiDevices(csv: string): GpuDeviceInfo[] {
  return csvLines(csv).map((line) => {
    const malformed = (why: string) =>
      new GpuProbeError(
        `cannot read nvidia-smi's device line ${JSON.stringify(line)}: ${why} ` +
          '(expected "index, name, memory.total, memory.used, memory.free, compute_cap" with memory in MiB)',
      );
    const fields = line.split(',').map((field) => field.trim());
    let computeCapability: [number, number] | undefined;
    let memoryEnd = fields.length;
    const last = fields[fields.length - 1]!;
    const capability = /^(\d+)\.(\d+)$/.exec(last);
    if (capability !== null) {
      computeCapability = [Number(capability[1]), Number(capability[2])];
      memoryEnd -= 1;
    } else if (notAvailable(last) && fields.length >= 6) {
      memoryEnd -= 1;
    }
    if (memoryEnd < 5) throw malformed(`it has ${fields.length} fields`);
    const [indexField, ...nameFields] = fields.slice(0, memoryEnd - 3);
    const [totalField, usedField, freeField] = fields.slice(memoryEnd - 3, memoryEnd) as [string, string, string];
    if (!/^\d+$/.test(indexField!)) throw malformed(`the index ${JSON.stringify(indexField)} is not a non-negative integer`);
    const name = nameFields.join(', ');
    if (name === '') throw malformed('the name is empty');
    const [totalBytes, usedBytes, freeBytes] = [totalField, usedField, freeField].map(parseMiB);
    if (totalBytes === undefined || usedBytes === undefined || freeBytes === undefined) {
      throw malformed(
        `the memory fields ${JSON.stringify(`${totalField}, ${usedField}, ${freeField}`)} are not all numbers of MiB ` +
          "(a GPU whose memory nvidia-smi does not report needs --kv-cache-memory to set the KV cache's size)",
      );
    }
    return { index: Number(indexField), name, totalBytes, usedBytes, freeBytes, computeCapability };
  });
}

/**
 * Reads the bytes process `pid` holds on the GPUs from `nvidia-smi --query-compute-apps=pid,used_memory
 * --format=csv,noheader,nounits` (MiB), summed over its lines (one a device it uses). Undefined when `pid` is not
 * listed (inside a container nvidia-smi may show the host's process ids) or when any of its lines reads `[N/A]` (as
 * under MIG), since a partial sum would understate it. Empty lines are skipped.
 *
 * @throws {GpuProbeError} on a line that is not `pid, used_memory`, quoting it.
 */
export function parseNvidiaSmiProcessMemory(csv: string, pid: number): number | undefined {
  let total: number | undefined;
  let unknown = false;
  for (const line of csvLines(csv)) {
    const fields = line.split(',').map((field) => field.trim());
    const [pidField, memoryField] = fields;
    const bytes = memoryField === undefined ? undefined : parseMiB(memoryField);
    if (
      fields.length !== 2 ||
      !/^\d+$/.test(pidField!) ||
      (bytes === undefined && !notAvailable(memoryField!))
    ) {
      throw new GpuProbeError(
        `cannot read nvidia-smi's compute process line ${JSON.stringify(line)} (expected "pid, used_memory" with memory in MiB)`,
      );
    }
    if (Number(pidField) !== pid) continue;
    if (bytes === undefined) unknown = true;
    else total = (total ?? 0) + bytes;
  }
  return unknown ? undefined : total;
}

/** Where the GPU model runner reads the devices and its own memory use from; tests pass a fake. */
export interface GpuProbe {
  /** Every GPU the driver reports, in nvidia-smi's order (CUDA_VISIBLE_DEVICES does not filter it). */
  devices(): GpuDeviceInfo[];
  /** The bytes process `pid` holds on the GPUs, or undefined when the driver does not say. */
  processUsedBytes(pid: number): number | undefined;
}

/**
 * A {@link GpuProbe} that runs `command` (nvidia-smi) synchronously, with a 10-second timeout, on each call.
 *
 * @throws {GpuProbeError} from either method when the command is missing, fails, times out or prints what the parsers
 *   cannot read; the message says that `--kv-cache-memory` sets the KV cache's size without nvidia-smi.
 */
export function nvidiaSmiProbe(command = 'nvidia-smi'): GpuProbe {
  const run = (args: readonly string[]): string => {
    try {
      return execFileSync(command, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      throw new GpuProbeError(`${command} ${args.join(' ')} ${failureReason(command, error)}; ${kvCacheMemoryHint}`, {
        cause: error,
      });
    }
  };
  return {
    devices: () => parseNvidiaSmiDevices(run(nvidiaSmiDeviceArgs)),
    processUsedBytes: (pid) => parseNvidiaSmiProcessMemory(run(nvidiaSmiProcessArgs), pid),
  };
}

function failureReason(command: string, error: unknown): string {
  const failure = error as NodeJS.ErrnoException & { status?: number | null; signal?: string | null; stderr?: string; stdout?: string };
  if (failure.code === 'ENOENT') return `failed: ${command} was not found`;
  if (failure.code === 'EACCES') return `failed: ${command} is not executable`;
  if (failure.code === 'ETIMEDOUT') return 'did not finish within 10 s';
  const output = `${failure.stderr ?? ''}\n${failure.stdout ?? ''}`.trim().replace(/\s+/g, ' ');
  const how =
    typeof failure.status === 'number'
      ? `exited with status ${failure.status}`
      : failure.signal
        ? `was killed by ${failure.signal}`
        : `failed (${failure.message})`;
  return output === '' ? how : `${how}: ${output.length > 500 ? `${output.slice(0, 500)}…` : output}`;
}

/**
 * The device this process's CUDA device 0 is: the first index listed in CUDA_VISIBLE_DEVICES, or the first device
 * when it is unset. nvidia-smi ignores CUDA_VISIBLE_DEVICES and uses physical indices, so the index is looked up among
 * `devices`. A first entry that is not an integer (a `GPU-…` or `MIG-…` UUID) falls back to the first device.
 *
 * @throws {GpuProbeError} when there is no device, when CUDA_VISIBLE_DEVICES hides them all (empty, or a negative
 *   first entry), or when it names an index nvidia-smi does not list.
 */
export function selectDevice(devices: GpuDeviceInfo[], env: NodeJS.ProcessEnv = process.env): GpuDeviceInfo {
  if (devices.length === 0) throw new GpuProbeError('nvidia-smi lists no GPU, so there is none to run the model on');
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible === undefined) return devices[0]!;
  const first = visible.split(',')[0]!.trim();
  if (first === '' || /^-\d+$/.test(first)) {
    throw new GpuProbeError(`CUDA_VISIBLE_DEVICES=${JSON.stringify(visible)} hides every GPU from this process`);
  }
  if (!/^\d+$/.test(first)) return devices[0]!;
  const device = devices.find((candidate) => candidate.index === Number(first));
  if (device === undefined) {
    throw new GpuProbeError(
      `CUDA_VISIBLE_DEVICES=${JSON.stringify(visible)} names GPU ${first}, but nvidia-smi lists only ` +
        devices.map((candidate) => candidate.index).join(', '),
    );
  }
  return device;
}

/**
 * The block size to use on a GPU when none is asked for. ONNX Runtime's PagedAttention runs FlashAttention on the
 * paged KV cache only on sm 8.0 or newer, and only when each block holds a multiple of 256 tokens for head_dim <= 64,
 * of 128 for head_dim <= 128 (FlashAttention's tile of keys, which must not straddle blocks). Such a device gets the
 * smallest block size the fast path takes; anything else (an older GPU, a wider head) falls back to the memory
 * efficient kernel, which takes any power of two of at least 16, so it gets 16: smaller blocks waste less of a
 * sequence's last block and share prefixes more finely.
 */
export function defaultGpuBlockSize(headDim: number, computeCapability: [number, number] | undefined): number {
  const flashAttention = computeCapability !== undefined && computeCapability[0] >= 8;
  if (flashAttention && headDim <= 64) return 256;
  if (flashAttention && headDim <= 128) return 128;
  return 16;
}

/**
 * Why `blockSize` cannot be PagedAttention's block size on a GPU (it must be a power of two of at least 16), or
 * undefined when it can.
 */
export function pagedBlockSizeProblem(blockSize: number): string | undefined {
  let powerOfTwo = 16;
  while (powerOfTwo < blockSize) powerOfTwo *= 2;
  if (powerOfTwo === blockSize) return undefined;
  return `block_size must be a power of two of at least 16 for PagedAttention on a GPU, got ${blockSize}`;
}

/**
 * Throws when the device has less free memory at start-up than the share of it this process may use, as vLLM does:
 * another process holds memory the plan would count on.
 *
 * @throws {GpuMemoryError}
 */
export function checkStartupFreeMemory(device: GpuDeviceInfo, utilization: number): void {
  const desiredBytes = utilization * device.totalBytes;
  if (device.freeBytes >= desiredBytes) return;
  throw new GpuMemoryError(
    `Free memory on device ${device.index} (${formatBytes(device.freeBytes)} of ${formatBytes(device.totalBytes)}) at start-up ` +
      `is less than the desired GPU memory utilization (${utilization}, ${formatBytes(desiredBytes)}); ` +
      'lower --gpu-memory-utilization or free memory on the device',
    desiredBytes,
    device.freeBytes,
  );
}

/** What {@link planGpuKvBlocks} measures the KV cache from. Bytes throughout. */
export interface GpuKvPlanInput {
  /** The device, as probed at start-up. */
  device: GpuDeviceInfo;
  /** The share of the device's total memory this process may use, in (0, 1]. */
  gpuMemoryUtilization: number;
  /** What this process holds on the device after the profiling run (weights, activations, runtime, profiling pools). */
  processUsedAfterProfileBytes: number;
  /** The KV pools allocated for the profiling run, counted in `processUsedAfterProfileBytes`. */
  profilePoolBytes: number;
  /** The model's weights on the device. */
  weightsBytes: number;
  /** One block over every pool (every layer's keys and values). */
  bytesPerBlock: number;
  /** The most bytes one pool (one tensor) may take. */
  maxPoolBytes: number;
  /** How many pools share each block evenly. */
  numPools: number;
}

/** The KV cache's size on a GPU and how it was reached. Bytes throughout. */
export interface GpuKvPlan {
  numBlocks: number;
  /** `gpuMemoryUtilization` × the device's total memory. */
  budgetBytes: number;
  weightsBytes: number;
  /** What the process held after the profiling run beyond the weights and the profiling pools: activation peak and runtime. */
  activationPeakBytes: number;
  /** The budget less everything but the KV cache: what the KV cache may take (before rounding down to blocks). */
  kvCacheBytes: number;
  /** Whether `numBlocks` was lowered so that no pool passes `maxPoolBytes`. */
  cappedByPoolLimit: boolean;
  /** One line for the log that says how the numbers were reached. */
  log: string;
}

/**
 * Sizes the KV cache on a GPU by vLLM's rule: the process may use `gpuMemoryUtilization` of the device's total memory;
 * what it holds after a profiling run at full batch, less the profiling run's own KV pools, is the memory everything
 * but the KV cache needs (weights, activation peak, runtime context), and the KV cache gets the rest of the budget, in
 * whole blocks. Each of the `numPools` pools holds `bytesPerBlock / numPools` bytes a block, and no pool may pass
 * `maxPoolBytes`, which caps the block count.
 *
 * @throws {GpuMemoryError} when the budget leaves no room for one block.
 * @throws {GpuProbeError} when the process's measured use is less than the profiling pools it allocated.
 */
export function planGpuKvBlocks(input: GpuKvPlanInput): GpuKvPlan {
  const { device, gpuMemoryUtilization: utilization, weightsBytes, bytesPerBlock, numPools, maxPoolBytes } = input;
  if (!(utilization > 0 && utilization <= 1)) throw new RangeError(`gpuMemoryUtilization must be in (0, 1], got ${utilization}`);
  for (const [name, value] of Object.entries({ bytesPerBlock, numPools })) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  for (const [name, value] of Object.entries({
    processUsedAfterProfileBytes: input.processUsedAfterProfileBytes,
    profilePoolBytes: input.profilePoolBytes,
    weightsBytes,
    maxPoolBytes,
  })) {
    if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`${name} must be a non-negative number of bytes, got ${value}`);
  }
  if (bytesPerBlock % numPools !== 0) {
    throw new RangeError(`bytesPerBlock (${bytesPerBlock}) must split evenly over ${numPools} pools`);
  }

  const budgetBytes = Math.floor(utilization * device.totalBytes);
  const nonKvBytes = input.processUsedAfterProfileBytes - input.profilePoolBytes;
  if (nonKvBytes < 0) {
    throw new GpuProbeError(
      `nvidia-smi says this process holds ${formatBytes(input.processUsedAfterProfileBytes)} on GPU ${device.index} after ` +
        `the profiling run, less than the ${formatBytes(input.profilePoolBytes)} of KV pools it allocated; ${kvCacheMemoryHint}`,
    );
  }
  const activationPeakBytes = Math.max(0, nonKvBytes - weightsBytes);
  const kvCacheBytes = budgetBytes - nonKvBytes;
  const sm = device.computeCapability === undefined ? '' : `, sm ${device.computeCapability.join('.')}`;
  const head =
    `GPU ${device.index} (${device.name}${sm}): ${formatBytes(device.totalBytes)} × ${utilization.toFixed(2)} = ${formatBytes(budgetBytes)}; ` +
    `weights ${formatBytes(weightsBytes)}, activation peak and runtime ${formatBytes(activationPeakBytes)} (profiling run)`;
  if (kvCacheBytes < bytesPerBlock) {
    throw new GpuMemoryError(
      `${head}; that leaves ${kvCacheBytes <= 0 ? 'no memory' : `${formatBytes(kvCacheBytes)}, less than one block (${formatBytes(bytesPerBlock)}),`} ` +
        'for the KV cache once the weights and the activation peak are counted; ' +
        'raise --gpu-memory-utilization or lower --max-num-batched-tokens (or --max-num-seqs)',
      nonKvBytes + bytesPerBlock,
      budgetBytes,
    );
  }

  let numBlocks = Math.floor(kvCacheBytes / bytesPerBlock);
  const poolBlockBytes = bytesPerBlock / numPools;
  const poolLimitBlocks = Math.floor(maxPoolBytes / poolBlockBytes);
  const cappedByPoolLimit = numBlocks > poolLimitBlocks;
  if (cappedByPoolLimit) {
    if (poolLimitBlocks < 1) {
      throw new RangeError(`maxPoolBytes (${maxPoolBytes}) is less than one block of one pool (${poolBlockBytes} bytes)`);
    }
    numBlocks = poolLimitBlocks;
  }
  const cap = cappedByPoolLimit ? ` (capped: one pool may hold at most ${formatBytes(maxPoolBytes)})` : '';
  const log = `${head}; KV cache ${formatBytes(kvCacheBytes)}, ${numBlocks} blocks${cap}`;
  return { numBlocks, budgetBytes, weightsBytes, activationPeakBytes, kvCacheBytes, cappedByPoolLimit, log };
}

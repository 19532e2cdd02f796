import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PagodaEngineError } from '../errors';
import {
  checkStartupFreeMemory,
  defaultGpuBlockSize,
  GpuMemoryError,
  GpuProbeError,
  nvidiaSmiProbe,
  pagedBlockSizeProblem,
  parseNvidiaSmiDevices,
  parseNvidiaSmiProcessMemory,
  planGpuKvBlocks,
  selectDevice,
  type GpuDeviceInfo,
  type GpuKvPlanInput,
} from './gpu-device';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

const h100 = '0, NVIDIA H100 80GB HBM3, 81559, 512, 81047, 9.0\n';
const fourGpus = [
  '0, NVIDIA A100-SXM4-40GB, 40960, 4, 40326, 8.0',
  '1, NVIDIA A100-SXM4-40GB, 40960, 1200, 39130, 8.0',
  '2, Tesla T4, 15360, 0, 14930, 7.5',
  '3, Tesla T4, 15360, 0, 14930, 7.5',
  '',
].join('\n');

const thrown = (run: () => unknown): unknown => {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
};

describe('parseNvidiaSmiDevices', () => {
  it('reads a device line in MiB', () => {
    expect(parseNvidiaSmiDevices(h100)).toEqual([
      {
        index: 0,
        name: 'NVIDIA H100 80GB HBM3',
        totalBytes: 81559 * MiB,
        usedBytes: 512 * MiB,
        freeBytes: 81047 * MiB,
        computeCapability: [9, 0],
      },
    ]);
  });

  it('reads several devices and skips empty lines and CRLF', () => {
    const devices = parseNvidiaSmiDevices(`\r\n${fourGpus.replaceAll('\n', '\r\n')}\r\n`);
    expect(devices.map((device) => [device.index, device.name, device.computeCapability])).toEqual([
      [0, 'NVIDIA A100-SXM4-40GB', [8, 0]],
      [1, 'NVIDIA A100-SXM4-40GB', [8, 0]],
      [2, 'Tesla T4', [7, 5]],
      [3, 'Tesla T4', [7, 5]],
    ]);
    expect(devices[1]!.usedBytes).toBe(1200 * MiB);
    expect(parseNvidiaSmiDevices('')).toEqual([]);
  });

  it('leaves the compute capability undefined when it reads [N/A] or is missing', () => {
    expect(parseNvidiaSmiDevices('0, Tesla K80, 11441, 0, 11441, [N/A]')[0]!.computeCapability).toBeUndefined();
    const old = parseNvidiaSmiDevices('1, Tesla P100-PCIE-16GB, 16280, 10, 16270');
    expect(old).toEqual([
      { index: 1, name: 'Tesla P100-PCIE-16GB', totalBytes: 16280 * MiB, usedBytes: 10 * MiB, freeBytes: 16270 * MiB, computeCapability: undefined },
    ]);
  });

  it('keeps a name that holds a comma whole', () => {
    expect(parseNvidiaSmiDevices('0, Odd GPU, Rev 2, 1024, 0, 1024, 8.6')[0]).toMatchObject({ name: 'Odd GPU, Rev 2', totalBytes: GiB, computeCapability: [8, 6] });
  });

  it.each([
    ['too few fields', '0, NVIDIA H100 80GB HBM3, 81559'],
    ['a non-numeric index', 'GPU0, NVIDIA H100 80GB HBM3, 81559, 512, 81047, 9.0'],
    ['memory that is not a number', '0, NVIDIA H100 80GB HBM3, 81559 MiB, 512 MiB, 81047 MiB, 9.0'],
    ['unreported memory', '0, NVIDIA GB10, [N/A], [N/A], [N/A], 12.1'],
    ['an empty name', '0, , 81559, 512, 81047, 9.0'],
    ['an error message', 'NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver.'],
  ])('throws a GpuProbeError quoting a line with %s', (_, line) => {
    const error = thrown(() => parseNvidiaSmiDevices(`${h100}${line}\n`));
    expect(error).toBeInstanceOf(GpuProbeError);
    expect(PagodaEngineError.isInstance(error)).toBe(true);
    expect((error as GpuProbeError).code).toBe('gpu_probe_failed');
    expect((error as GpuProbeError).message).toContain(JSON.stringify(line));
  });
});

describe('parseNvidiaSmiProcessMemory', () => {
  const apps = '4242, 1536\n\n977, 30000\n4242, 512\n';

  it('sums the MiB a process holds over its lines', () => {
    expect(parseNvidiaSmiProcessMemory(apps, 4242)).toBe(2048 * MiB);
    expect(parseNvidiaSmiProcessMemory(apps, 977)).toBe(30000 * MiB);
  });

  it('is undefined for an absent process, an empty listing or [N/A] memory', () => {
    expect(parseNvidiaSmiProcessMemory(apps, 1)).toBeUndefined();
    expect(parseNvidiaSmiProcessMemory('', 4242)).toBeUndefined();
    expect(parseNvidiaSmiProcessMemory('\n', 4242)).toBeUndefined();
    expect(parseNvidiaSmiProcessMemory('4242, [N/A]\n977, 100', 4242)).toBeUndefined();
    expect(parseNvidiaSmiProcessMemory('4242, [N/A]\n4242, 100', 4242)).toBeUndefined();
    expect(parseNvidiaSmiProcessMemory('4242, [N/A]\n977, 100', 977)).toBe(100 * MiB);
  });

  it('throws a GpuProbeError quoting a malformed line', () => {
    expect(() => parseNvidiaSmiProcessMemory('4242, 100\nabc, 12\n', 4242)).toThrow(GpuProbeError);
    expect(() => parseNvidiaSmiProcessMemory('4242\n', 4242)).toThrow('"4242"');
    expect(() => parseNvidiaSmiProcessMemory('4242, lots\n', 4242)).toThrow('"4242, lots"');
  });
});

describe('selectDevice', () => {
  const devices = parseNvidiaSmiDevices(fourGpus);

  it('takes the first device without CUDA_VISIBLE_DEVICES', () => {
    expect(selectDevice(devices, {}).index).toBe(0);
  });

  it('takes the first index CUDA_VISIBLE_DEVICES lists', () => {
    expect(selectDevice(devices, { CUDA_VISIBLE_DEVICES: '2' }).index).toBe(2);
    expect(selectDevice(devices, { CUDA_VISIBLE_DEVICES: '3,1' }).index).toBe(3);
    expect(selectDevice(devices, { CUDA_VISIBLE_DEVICES: ' 1 , 0' }).index).toBe(1);
  });

  it('falls back to the first device for a UUID', () => {
    expect(selectDevice(devices, { CUDA_VISIBLE_DEVICES: 'GPU-8f6d3b4e-0c1a-4c2b-9f5e-1a2b3c4d5e6f' }).index).toBe(0);
    expect(selectDevice(devices, { CUDA_VISIBLE_DEVICES: 'MIG-GPU-8f6d3b4e/1/0' }).index).toBe(0);
  });

  it('throws when there is no device, every device is hidden or the index is not listed', () => {
    expect(() => selectDevice([], {})).toThrow(GpuProbeError);
    expect(() => selectDevice(devices, { CUDA_VISIBLE_DEVICES: '' })).toThrow(/hides every GPU/);
    expect(() => selectDevice(devices, { CUDA_VISIBLE_DEVICES: '-1' })).toThrow(/hides every GPU/);
    expect(() => selectDevice(devices, { CUDA_VISIBLE_DEVICES: '7' })).toThrow('names GPU 7, but nvidia-smi lists only 0, 1, 2, 3');
  });
});

describe('defaultGpuBlockSize', () => {
  it.each([
    [64, [9, 0], 256],
    [128, [9, 0], 128],
    [256, [9, 0], 16],
    [64, [8, 0], 256],
    [128, [8, 0], 128],
    [256, [8, 0], 16],
    [80, [8, 6], 128],
    [64, [7, 5], 16],
    [128, [7, 5], 16],
    [256, [7, 5], 16],
    [64, undefined, 16],
  ] as Array<[number, [number, number] | undefined, number]>)('gives head_dim %i on sm %j block size %i', (headDim, sm, blockSize) => {
    expect(defaultGpuBlockSize(headDim, sm)).toBe(blockSize);
    expect(pagedBlockSizeProblem(blockSize)).toBeUndefined();
  });
});

describe('pagedBlockSizeProblem', () => {
  it('accepts powers of two of at least 16', () => {
    for (const blockSize of [16, 32, 128, 256, 1024]) expect(pagedBlockSizeProblem(blockSize)).toBeUndefined();
  });

  it('names the rule and the value otherwise', () => {
    expect(pagedBlockSizeProblem(24)).toBe('block_size must be a power of two of at least 16 for PagedAttention on a GPU, got 24');
    for (const blockSize of [8, 1, 0, -16, 48, 16.5, 257]) expect(pagedBlockSizeProblem(blockSize)).toContain(`got ${blockSize}`);
  });
});

describe('checkStartupFreeMemory', () => {
  const device: GpuDeviceInfo = { index: 0, name: 'NVIDIA H100 80GB HBM3', totalBytes: 80 * GiB, usedBytes: 20 * GiB, freeBytes: 60 * GiB, computeCapability: [9, 0] };

  it('passes when free memory covers the budget', () => {
    expect(() => checkStartupFreeMemory(device, 0.75)).not.toThrow();
    expect(() => checkStartupFreeMemory(device, 0.5)).not.toThrow();
  });

  it('throws like vLLM when it does not', () => {
    const error = thrown(() => checkStartupFreeMemory(device, 0.9)) as GpuMemoryError;
    expect(error).toBeInstanceOf(GpuMemoryError);
    expect(error.code).toBe('gpu_memory_insufficient');
    expect(error.message).toBe(
      'Free memory on device 0 (60.00 GiB of 80.00 GiB) at start-up is less than the desired GPU memory utilization ' +
        '(0.9, 72.00 GiB); lower --gpu-memory-utilization or free memory on the device',
    );
    expect([error.neededBytes, error.availableBytes]).toEqual([72 * GiB, 60 * GiB]);
  });
});

describe('planGpuKvBlocks', () => {
  // 16 layers' keys and values (32 pools) of 128 tokens × 8 KV heads × head_dim 64 in fp16: 128 KiB a pool, 4 MiB a block.
  const input: GpuKvPlanInput = {
    device: { index: 0, name: 'NVIDIA H100 80GB HBM3', totalBytes: 80 * GiB, usedBytes: 0, freeBytes: 80 * GiB, computeCapability: [9, 0] },
    gpuMemoryUtilization: 0.9,
    processUsedAfterProfileBytes: 2 * GiB + 512 * MiB,
    profilePoolBytes: 512 * MiB,
    weightsBytes: 512 * MiB,
    bytesPerBlock: 4 * MiB,
    maxPoolBytes: 4 * GiB,
    numPools: 32,
  };

  it('gives the KV cache the budget less weights and the activation peak', () => {
    expect(planGpuKvBlocks(input)).toEqual({
      numBlocks: 17920,
      budgetBytes: 72 * GiB,
      weightsBytes: 512 * MiB,
      activationPeakBytes: 1.5 * GiB,
      kvCacheBytes: 70 * GiB,
      cappedByPoolLimit: false,
      log:
        'GPU 0 (NVIDIA H100 80GB HBM3, sm 9.0): 80.00 GiB × 0.90 = 72.00 GiB; weights 512.00 MiB, ' +
        'activation peak and runtime 1.50 GiB (profiling run); KV cache 70.00 GiB, 17920 blocks',
    });
  });

  it('rounds a real H100 down to whole blocks', () => {
    const plan = planGpuKvBlocks({
      ...input,
      device: parseNvidiaSmiDevices(h100)[0]!,
      processUsedAfterProfileBytes: 3 * GiB + 5 * MiB + 256 * MiB,
      profilePoolBytes: 256 * MiB,
      weightsBytes: 2 * GiB,
      bytesPerBlock: 2 * MiB,
    });
    expect(plan.budgetBytes).toBe(76968728985);
    expect(plan.activationPeakBytes).toBe(GiB + 5 * MiB);
    expect(plan.kvCacheBytes).toBe(73742260633);
    expect(plan.numBlocks).toBe(35163);
    expect(plan.log).toBe(
      'GPU 0 (NVIDIA H100 80GB HBM3, sm 9.0): 79.65 GiB × 0.90 = 71.68 GiB; weights 2.00 GiB, ' +
        'activation peak and runtime 1.00 GiB (profiling run); KV cache 68.68 GiB, 35163 blocks',
    );
  });

  it('floors the activation peak at 0 and leaves sm out when unknown', () => {
    const plan = planGpuKvBlocks({ ...input, device: { ...input.device, computeCapability: undefined }, weightsBytes: 3 * GiB });
    expect(plan.activationPeakBytes).toBe(0);
    expect(plan.kvCacheBytes).toBe(70 * GiB);
    expect(plan.log).toMatch(/^GPU 0 \(NVIDIA H100 80GB HBM3\): /);
  });

  it('caps the blocks so that no pool passes the limit', () => {
    const plan = planGpuKvBlocks({ ...input, maxPoolBytes: 2 * GiB });
    expect(plan.numBlocks).toBe(16384);
    expect(plan.cappedByPoolLimit).toBe(true);
    expect(plan.kvCacheBytes).toBe(70 * GiB);
    expect(plan.log).toContain('KV cache 70.00 GiB, 16384 blocks (capped: one pool may hold at most 2.00 GiB)');
    // Exactly at the limit is not capped.
    expect(planGpuKvBlocks({ ...input, maxPoolBytes: 17920 * 128 * 1024 })).toMatchObject({ numBlocks: 17920, cappedByPoolLimit: false });
    expect(planGpuKvBlocks({ ...input, maxPoolBytes: 17920 * 128 * 1024 - 1 })).toMatchObject({ numBlocks: 17919, cappedByPoolLimit: true });
  });

  it('throws when the weights and activation peak leave no room for the KV cache', () => {
    const error = thrown(() => planGpuKvBlocks({ ...input, gpuMemoryUtilization: 0.02 })) as GpuMemoryError;
    expect(error).toBeInstanceOf(GpuMemoryError);
    expect(error.code).toBe('gpu_memory_insufficient');
    expect(error.message).toContain('weights 512.00 MiB, activation peak and runtime 1.50 GiB');
    expect(error.message).toContain('leaves no memory for the KV cache');
    expect(error.message).toContain('raise --gpu-memory-utilization or lower --max-num-batched-tokens');
    // Room for less than one block is no better.
    const budget = Math.floor(0.9 * 80 * GiB);
    const almost = { ...input, processUsedAfterProfileBytes: budget - 4 * MiB + 1 + 512 * MiB };
    expect(() => planGpuKvBlocks(almost)).toThrow(/less than one block \(4\.00 MiB\)/);
    expect(planGpuKvBlocks({ ...almost, processUsedAfterProfileBytes: almost.processUsedAfterProfileBytes - 1 }).numBlocks).toBe(1);
  });

  it('throws a GpuProbeError when the measured use is less than the profiling pools', () => {
    expect(() => planGpuKvBlocks({ ...input, processUsedAfterProfileBytes: 256 * MiB })).toThrow(GpuProbeError);
  });

  it('rejects inputs that make no sense', () => {
    expect(() => planGpuKvBlocks({ ...input, gpuMemoryUtilization: 0 })).toThrow(RangeError);
    expect(() => planGpuKvBlocks({ ...input, gpuMemoryUtilization: 1.1 })).toThrow(RangeError);
    expect(() => planGpuKvBlocks({ ...input, bytesPerBlock: 0 })).toThrow(RangeError);
    expect(() => planGpuKvBlocks({ ...input, numPools: 3 })).toThrow(/split evenly/);
    expect(() => planGpuKvBlocks({ ...input, weightsBytes: -1 })).toThrow(RangeError);
    expect(() => planGpuKvBlocks({ ...input, maxPoolBytes: 1024 })).toThrow(/less than one block of one pool/);
  });
});

describe('nvidiaSmiProbe', () => {
  let dir: string;
  let fake: string;
  let failing: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pagoda-nvidia-smi-'));
    fake = join(dir, 'nvidia-smi');
    writeFileSync(
      fake,
      [
        '#!/bin/sh',
        'case "$*" in',
        `  "--query-gpu=index,name,memory.total,memory.used,memory.free,compute_cap --format=csv,noheader,nounits") printf '%s\\n' '0, NVIDIA H100 80GB HBM3, 81559, 512, 81047, 9.0' '1, NVIDIA H100 80GB HBM3, 81559, 0, 81559, 9.0' ;;`,
        `  "--query-compute-apps=pid,used_memory --format=csv,noheader,nounits") printf '%s\\n' '4242, 1536' '977, 30000' '4242, 512' ;;`,
        '  *) echo "unexpected arguments: $*" >&2; exit 2 ;;',
        'esac',
        '',
      ].join('\n'),
    );
    chmodSync(fake, 0o755);
    failing = join(dir, 'failing-nvidia-smi');
    writeFileSync(failing, "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n");
    chmodSync(failing, 0o755);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the devices and a process’s memory from nvidia-smi', () => {
    const probe = nvidiaSmiProbe(fake);
    const devices = probe.devices();
    expect(devices.map((device) => [device.index, device.usedBytes])).toEqual([[0, 512 * MiB], [1, 0]]);
    expect(selectDevice(devices, { CUDA_VISIBLE_DEVICES: '1' }).freeBytes).toBe(81559 * MiB);
    expect(probe.processUsedBytes(4242)).toBe(2048 * MiB);
    expect(probe.processUsedBytes(1)).toBeUndefined();
  });

  it('throws a GpuProbeError that points to --kv-cache-memory when nvidia-smi is missing', () => {
    const error = thrown(() => nvidiaSmiProbe('/nonexistent/nvidia-smi').devices()) as GpuProbeError;
    expect(error).toBeInstanceOf(GpuProbeError);
    expect(error.code).toBe('gpu_probe_failed');
    expect(error.message).toContain('/nonexistent/nvidia-smi was not found');
    expect(error.message).toContain('nvidia-smi is needed to plan the KV cache on a GPU');
    expect(error.message).toContain('--kv-cache-memory');
    expect(() => nvidiaSmiProbe('/nonexistent/nvidia-smi').processUsedBytes(1)).toThrow(/--kv-cache-memory/);
  });

  it('throws a GpuProbeError with the status and output when nvidia-smi fails', () => {
    const error = thrown(() => nvidiaSmiProbe(failing).devices()) as GpuProbeError;
    expect(error).toBeInstanceOf(GpuProbeError);
    expect(error.message).toContain('exited with status 9');
    expect(error.message).toContain("couldn't communicate with the NVIDIA driver");
    expect(error.message).toContain('--kv-cache-memory');
  });
});

import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { readSafetensorsHeader } from './safetensors';

/** A tensor to write: its stored dtype, shape and raw little-endian bytes. */
export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Writes a safetensors file (8-byte header length, JSON header, data) for tests. */
export async function writeSafetensors(file: string, tensors: readonly RawTensor[]): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const tensor of tensors) {
    header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + tensor.bytes.length] };
    offset += tensor.bytes.length;
  }
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length));
  await writeFile(file, Buffer.concat([length, headerBytes, ...tensors.map((tensor) => Buffer.from(tensor.bytes))]));
}

/** Reads every tensor of a safetensors file with its raw bytes, so a test can rewrite it altered. */
export async function readRawTensors(file: string): Promise<RawTensor[]> {
  const entries = await readSafetensorsHeader(file);
  const content = await readFile(file);
  return [...entries.values()].map((entry) => ({
    name: entry.name,
    dtype: entry.dtype,
    shape: [...entry.shape],
    bytes: new Uint8Array(content.subarray(entry.begin, entry.end)),
  }));
}

/** A temporary checkpoint folder holding a copy of `sourceDir`'s config.json, removed when the test ends. */
export async function checkpointCopy(sourceDir: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pagoda-checkpoint-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  await copyFile(join(sourceDir, 'config.json'), join(dir, 'config.json'));
  return dir;
}

import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';

/** `20250101-120000`: the local time, as vLLM stamps its result files. */
export function timestamp(date = new Date()): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}-${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
}

/** The machine a number was measured on: numbers from different machines do not compare. */
export function machineInfo(): Record<string, unknown> {
  return {
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memory_gib: Math.round(totalmem() / 2 ** 30),
  };
}

/** Writes `record` as indented JSON (infinite numbers as the string "inf"), creating the folder. */
export async function saveJson(file: string, record: unknown): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(record, (_key, value: unknown) => (value === Infinity ? 'inf' : value), 2)}\n`);
}

import { formatBytes } from '@pagoda/kv-cache';
import type { WeightFormat } from '../model/weight-tensor';

/** The process's resident memory now and at its peak so far (bytes). */
export interface ProcessMemory {
  readonly rssBytes: number;
  readonly peakRssBytes: number;
}

/** RSS now (`process.memoryUsage.rss`) and the peak RSS (`process.resourceUsage().maxRSS`, the kernel's high-water mark). */
export function processMemory(): ProcessMemory {
  return { rssBytes: process.memoryUsage.rss(), peakRssBytes: process.resourceUsage().maxRSS * 1024 };
}

/**
 * The start-up log's memory line: RSS before the weights loaded (Node, the tokenizer), after start-up, and the peak
 * (loading included), beside what the model needs: the weights as held and the KV cache. Peak minus the RSS before
 * loading, over weights plus KV cache, says how close the process comes to holding each byte once.
 */
export function memoryLogLine(input: {
  readonly before: ProcessMemory;
  readonly after: ProcessMemory;
  readonly weightBytes: number;
  readonly weightFormats: readonly WeightFormat[];
  readonly kvCacheBytes: number;
  readonly accuracyLevel: number | undefined;
}): string {
  const { before, after, weightBytes, kvCacheBytes } = input;
  const needed = weightBytes + kvCacheBytes;
  const growth = after.peakRssBytes - before.rssBytes;
  const formats = input.weightFormats.join(' + ') + (input.accuracyLevel === undefined ? '' : `, MatMulNBits accuracy_level ${input.accuracyLevel}`);
  return (
    `memory: RSS ${formatBytes(before.rssBytes)} before loading the weights, ${formatBytes(after.rssBytes)} after start-up, peak ` +
    `${formatBytes(after.peakRssBytes)}; weights as held ${formatBytes(weightBytes)} (${formats}), KV cache ${formatBytes(kvCacheBytes)}: ` +
    `the peak is ${formatBytes(growth)} above the start, ${(growth / needed).toFixed(2)}× weights + KV cache`
  );
}

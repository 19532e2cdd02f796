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

/** The process's RSS before the weights loaded and after start-up, its peak, and what the model needs (bytes). */
export interface StartupMemory {
  /** RSS before the weights loaded: Node, the tokenizer (the baseline of the memory bound). */
  readonly rssBeforeLoadingBytes: number;
  readonly rssAfterStartupBytes: number;
  /** The peak RSS up to the end of start-up, loading included. */
  readonly peakRssBytes: number;
  /** The weights as held: float32, or quantized codes plus float32 scales. */
  readonly weightBytes: number;
  readonly kvCacheBytes: number;
}

/**
 * The start-up log's memory line: RSS before the weights loaded (Node, the tokenizer), after start-up, and the peak
 * (loading included), beside what the model needs: the weights as held and the KV cache. Peak minus the RSS before
 * loading, over weights plus KV cache, says how close the process comes to holding each byte once.
 */
export function memoryLogLine(
  memory: StartupMemory,
  description: { readonly weightFormats: readonly WeightFormat[]; readonly accuracyLevel: number | undefined },
): string {
  const { rssBeforeLoadingBytes, rssAfterStartupBytes, peakRssBytes, weightBytes, kvCacheBytes } = memory;
  const growth = peakRssBytes - rssBeforeLoadingBytes;
  const formats = description.weightFormats.join(' + ') + (description.accuracyLevel === undefined ? '' : `, MatMulNBits accuracy_level ${description.accuracyLevel}`);
  return (
    `memory: RSS ${formatBytes(rssBeforeLoadingBytes)} before loading the weights, ${formatBytes(rssAfterStartupBytes)} after start-up, peak ` +
    `${formatBytes(peakRssBytes)}; weights as held ${formatBytes(weightBytes)} (${formats}), KV cache ${formatBytes(kvCacheBytes)}: ` +
    `the peak is ${formatBytes(growth)} above the start, ${(growth / (weightBytes + kvCacheBytes)).toFixed(2)}× weights + KV cache`
  );
}

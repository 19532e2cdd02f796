/** Where a progress bar draws: a terminal stream (process.stderr by default). */
export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

/**
 * A weight-loading progress callback that draws one self-overwriting line on a terminal, or nothing when the stream
 * is not a TTY (logs and pipes should not fill with carriage returns).
 */
export function weightLoadingProgressBar(
  label: string,
  stream: ProgressStream = process.stderr,
): ((loadedBytes: number, totalBytes: number) => void) | undefined {
  if (stream.isTTY !== true) return undefined;
  let lastDrawnPercent = -1;
  return (loadedBytes, totalBytes) => {
    const fraction = totalBytes === 0 ? 1 : loadedBytes / totalBytes;
    const percent = Math.floor(fraction * 100);
    // Redraw once per percent: a checkpoint has thousands of tensors and the terminal need not see each.
    if (percent === lastDrawnPercent) return;
    lastDrawnPercent = percent;
    const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - label.length - 30));
    const filled = Math.round(fraction * width);
    const megabytes = (bytes: number): string => (bytes / 1e6).toFixed(0);
    stream.write(
      `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(percent).padStart(3)}% ` +
        `${megabytes(loadedBytes)}/${megabytes(totalBytes)} MB`,
    );
    if (loadedBytes >= totalBytes) stream.write('\n');
  };
}

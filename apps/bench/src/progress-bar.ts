/** Where a progress bar draws: a terminal's stderr, or anything with the same two members (tests). */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

/**
 * A one-line progress bar redrawn in place (`\r`), drawn only on a terminal so logs and pipes stay clean:
 *
 * ```
 * requests  42% |████████████░░░░░░░░░░░░░░░░░| 42/100 [00:07, 5.9 it/s]
 * ```
 */
export class ProgressBar {
  private done = 0;
  private readonly started: number;
  private lastDraw = -Infinity;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: ProgressStream | undefined = process.stderr,
    private readonly now: () => number = () => performance.now() / 1000,
  ) {
    this.started = now();
    this.draw(true);
  }

  get enabled(): boolean {
    return this.stream?.isTTY === true;
  }

  tick(count = 1): void {
    this.done += count;
    this.draw(this.done >= this.total);
  }

  /** Ends the line so later output starts on its own. */
  finish(): void {
    if (!this.enabled) return;
    this.draw(true);
    this.stream!.write('\n');
  }

  private draw(force: boolean): void {
    if (!this.enabled) return;
    const time = this.now();
    // At most ten redraws a second: a fast run must not spend its time printing.
    if (!force && time - this.lastDraw < 0.1) return;
    this.lastDraw = time;
    const fraction = this.total === 0 ? 1 : Math.min(1, this.done / this.total);
    const width = 30;
    const filled = Math.round(fraction * width);
    const elapsed = time - this.started;
    const rate = elapsed > 0 ? this.done / elapsed : 0;
    const clock = `${String(Math.floor(elapsed / 60)).padStart(2, '0')}:${String(Math.floor(elapsed % 60)).padStart(2, '0')}`;
    this.stream!.write(
      `\r${this.label} ${String(Math.floor(fraction * 100)).padStart(3)}% |${'█'.repeat(filled)}${'░'.repeat(width - filled)}| ${this.done}/${this.total} [${clock}, ${rate.toFixed(1)} it/s]`,
    );
  }
}

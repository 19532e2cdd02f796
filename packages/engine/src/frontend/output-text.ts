import { IncrementalDetokenizer } from './incremental-detokenizer';
import type { TextTokenizer } from './text-tokenizer';

export interface OutputTextOptions {
  /** Stop strings: generation ends where one appears, and it is cut from the text (vLLM's `stop`). */
  stop?: readonly string[];
  /** Keep the stop string at the end of the text (vLLM's `include_stop_str_in_output`). */
  includeStopStrInOutput?: boolean;
  skipSpecialTokens?: boolean;
}

export interface TextDelta {
  /** Text that is now final and may be streamed. */
  delta: string;
  /** The stop string that ended the output, if one did with this token. */
  stoppedAt: string | undefined;
}

/**
 * A request's output text as tokens arrive: incremental detokenization, stop strings, and the hold-back that keeps
 * a stream from ever showing part of a stop string (text that could still become one waits until it can't).
 */
export class OutputText {
  private readonly detokenizer: IncrementalDetokenizer;
  private readonly stop: readonly string[];
  private readonly includeStop: boolean;
  private fullText = '';
  private emitted = 0;
  private stopped: string | undefined = undefined;

  constructor(tokenizer: TextTokenizer, promptTokenIds: readonly number[], options: OutputTextOptions = {}) {
    this.detokenizer = new IncrementalDetokenizer(tokenizer, promptTokenIds, options.skipSpecialTokens ?? true);
    this.stop = (options.stop ?? []).filter((stop) => stop.length > 0);
    this.includeStop = options.includeStopStrInOutput ?? false;
  }

  /** The text so far (cut at the stop string once one matched). */
  get text(): string {
    return this.fullText;
  }

  get stoppedAt(): string | undefined {
    return this.stopped;
  }

  push(tokenId: number): TextDelta {
    if (this.stopped !== undefined) return { delta: '', stoppedAt: this.stopped };
    const added = this.detokenizer.push(tokenId);
    if (added.length === 0) return { delta: '', stoppedAt: undefined };
    this.fullText += added;
    const match = this.findStop(added.length);
    if (match !== undefined) {
      this.stopped = match.stop;
      this.fullText = this.fullText.slice(0, this.includeStop ? match.index + match.stop.length : match.index);
      return { delta: this.takeFrom(this.fullText.length), stoppedAt: match.stop };
    }
    return { delta: this.takeFrom(this.fullText.length - this.pendingStopPrefixLength()), stoppedAt: undefined };
  }

  /** Releases any held-back text; call when the request finishes for another reason (length, EOS, abort). */
  flush(): string {
    return this.takeFrom(this.fullText.length);
  }

  private takeFrom(end: number): string {
    if (end <= this.emitted) return '';
    const delta = this.fullText.slice(this.emitted, end);
    this.emitted = end;
    return delta;
  }

  /** The earliest stop string that the newly added text completes. */
  private findStop(addedLength: number): { stop: string; index: number } | undefined {
    let best: { stop: string; index: number } | undefined;
    for (const stop of this.stop) {
      const from = Math.max(0, this.fullText.length - addedLength - stop.length + 1);
      const index = this.fullText.indexOf(stop, from);
      if (index >= 0 && (best === undefined || index < best.index)) best = { stop, index };
    }
    return best;
  }

  /** The length of the longest end of the text that is the start of some stop string. */
  private pendingStopPrefixLength(): number {
    let longest = 0;
    for (const stop of this.stop) {
      for (let length = Math.min(stop.length - 1, this.fullText.length); length > longest; length -= 1) {
        if (this.fullText.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return Math.min(longest, this.fullText.length - this.emitted);
  }
}

import { type DeltaMessage, deltaOrNull, partialMarkerLength } from './delta-message';

/** A whole output split into its reasoning and its answer (vLLM's `extract_reasoning_content`). */
export interface ExtractedReasoning {
  readonly reasoningContent: string | null;
  readonly content: string | null;
}

/**
 * One model family's reasoning format, after vLLM's `ReasoningParser`: the text between `<think>` and `</think>`
 * is `reasoning_content`, the rest `content`. As with the tool parsers, one instance per request, a whole-output and
 * a streaming method that read the text the same way (so they agree), and `flush` for what a stream held back (a
 * partial `</think>`).
 */
export abstract class ReasoningParser {
  static readonly start = '<think>';
  static readonly end = '</think>';
  private emittedReasoning = 0;
  private emittedContent = 0;
  private lastText = '';

  protected abstract split(text: string, final: boolean): { reasoning: string; content: string };

  extractReasoningContent(output: string): ExtractedReasoning {
    const { reasoning, content } = this.split(output, true);
    return { reasoningContent: reasoning.length > 0 ? reasoning : null, content: content.length > 0 ? content : null };
  }

  extractReasoningContentStreaming(_previousText: string, currentText: string, _deltaText: string): DeltaMessage | null {
    this.lastText = currentText;
    return this.diff(this.split(currentText, false));
  }

  flush(): DeltaMessage | null {
    return this.diff(this.split(this.lastText, true));
  }

  /** Reasoning up to `</think>` in `body` (held back: a partial marker at its end), and the content after it. */
  protected static untilEnd(body: string, final: boolean): { reasoning: string; content: string } {
    const endAt = body.indexOf(ReasoningParser.end);
    if (endAt >= 0) return { reasoning: body.slice(0, endAt), content: body.slice(endAt + ReasoningParser.end.length) };
    return { reasoning: body.slice(0, body.length - (final ? 0 : partialMarkerLength(body, ReasoningParser.end))), content: '' };
  }

  private diff({ reasoning, content }: { reasoning: string; content: string }): DeltaMessage | null {
    const delta = { reasoningContent: reasoning.slice(this.emittedReasoning), content: content.slice(this.emittedContent) };
    this.emittedReasoning = Math.max(this.emittedReasoning, reasoning.length);
    this.emittedContent = Math.max(this.emittedContent, content.length);
    return deltaOrNull(delta);
  }
}

/**
 * Qwen3: the model opens `<think>` itself, so an output that starts with it reasons until `</think>` (all of it
 * when cut before), and one that does not (thinking disabled) is all content; a leading `</think>` (closing a think
 * block the prompt opened, with nothing to add) is dropped.
 */
export class Qwen3ReasoningParser extends ReasoningParser {
  protected split(text: string, final: boolean): { reasoning: string; content: string } {
    const { start, end } = ReasoningParser;
    if (text.startsWith(start)) return ReasoningParser.untilEnd(text.slice(start.length), final);
    if (text.startsWith(end)) return { reasoning: '', content: text.slice(end.length) };
    if (!final && (start.startsWith(text) || end.startsWith(text))) return { reasoning: '', content: '' };
    return { reasoning: '', content: text };
  }
}

/**
 * DeepSeek-R1: its chat template opens `<think>` in the prompt, so the output starts inside the reasoning (a
 * leading `<think>` is dropped) and reasons until `</think>`; without one, all of it is reasoning, as in vLLM.
 */
export class DeepSeekR1ReasoningParser extends ReasoningParser {
  protected split(text: string, final: boolean): { reasoning: string; content: string } {
    const { start } = ReasoningParser;
    if (text.startsWith(start)) return ReasoningParser.untilEnd(text.slice(start.length), final);
    if (!final && start.startsWith(text)) return { reasoning: '', content: '' };
    return ReasoningParser.untilEnd(text, final);
  }
}

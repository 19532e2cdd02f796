import type { SampledTokenLogprobs } from './logprobs';
import { rawLogprobs } from './logprobs';
import { SamplingWorkspace, adjustRow, applyTokenBitmask, argmax, drawToken, isGreedy, truncate } from './pipeline';
import type { SamplingHistory, SamplingParams, TokenBitmask } from './sampling-params';
import { SeededGenerator } from './seeded-generator';

/** One row of a batch: the parameters and history of the request (or of one of its n samples) it belongs to. */
export interface SamplingRow {
  readonly params: SamplingParams;
  readonly history: SamplingHistory;
  /**
   * This step's allowed tokens (a grammar's bitmask), applied before every other processor: a token it masks is
   * never sampled, greedy or not, and its logprob is -Infinity. Absent for unconstrained rows, which pay nothing.
   */
  readonly allowedTokenBitmask?: TokenBitmask | null;
}

/** A batch: `rows.length` logits rows of the vocabulary size each, back to back (row-major). */
export interface SamplingBatch {
  readonly logits: Float32Array;
  readonly rows: readonly SamplingRow[];
}

export interface SamplerOutput {
  /** One token per row. */
  readonly tokenIds: Int32Array;
  /** Per row: the logprobs when its params ask for them (`logprobs` not null), otherwise null. */
  readonly logprobs: ReadonlyArray<SampledTokenLogprobs | null>;
}

export interface SamplerOptions {
  /**
   * Uniform numbers in [0, 1) for rows without a seed (default `Math.random`). Inject a seeded source for
   * reproducible tests of unseeded behaviour.
   */
  readonly random?: () => number;
}

/**
 * Samples one token per row of a logits batch, with each row's parameters (see `pipeline.ts` for the order of the
 * processors) and, when asked, logprobs of the model's raw distribution (after a row's allowed-token bitmask, as
 * vLLM applies it to the logits before sampling).
 *
 * Randomness: every row draws a single uniform number. A seeded row takes it from its own {@link SeededGenerator},
 * keyed by the seed and the step (the number of output tokens so far), so a seeded request's tokens depend only on
 * its seed, prompt, parameters and logits: not on the other rows, their order, nor on a preemption that recomputes
 * it. An unseeded row takes it from the injected `random`. For n > 1 the caller gives each sample its own seed
 * (vLLM uses seed + index), or its samples would coincide.
 *
 * The sampler keeps scratch buffers between calls and is not reentrant; one per engine core is the intent.
 */
export class Sampler {
  private readonly random: () => number;
  private workspace: SamplingWorkspace | null = null;

  constructor({ random = Math.random }: SamplerOptions = {}) {
    this.random = random;
  }

  sample({ logits, rows }: SamplingBatch): SamplerOutput {
    const tokenIds = new Int32Array(rows.length);
    const logprobs: Array<SampledTokenLogprobs | null> = [];
    if (rows.length === 0) return { tokenIds, logprobs };
    const vocabSize = logits.length / rows.length;
    if (!Number.isInteger(vocabSize) || vocabSize === 0) {
      throw new RangeError(`${logits.length} logits do not split into ${rows.length} non-empty rows`);
    }
    const workspace = this.workspaceFor(vocabSize);
    for (let rowIndex = 0; rowIndex < rows.length; rowIndex += 1) {
      const { params, history, allowedTokenBitmask } = rows[rowIndex]!;
      const row = logits.subarray(rowIndex * vocabSize, (rowIndex + 1) * vocabSize);
      const raw = allowedTokenBitmask == null ? row : applyTokenBitmask(row, allowedTokenBitmask, workspace.masked());
      const tokenId = this.sampleRow(raw, params, history, workspace);
      tokenIds[rowIndex] = tokenId;
      const topCount = params.logprobs;
      logprobs.push(topCount == null ? null : rawLogprobs(raw, tokenId, topCount, workspace.topK));
    }
    return { tokenIds, logprobs };
  }

  private sampleRow(
    raw: Float32Array,
    params: SamplingParams,
    history: SamplingHistory,
    workspace: SamplingWorkspace,
  ): number {
    const row = adjustRow(raw, params, history, workspace);
    if (isGreedy(params)) return argmax(row);
    const truncation = truncate(row, params, workspace);
    if (!truncation.keepsAll && truncation.count === 1) return workspace.candidateIds[0]!;
    const seed = params.seed;
    const uniform =
      seed == null ? this.random() : new SeededGenerator(seed, history.outputTokenIds.length).nextFloat();
    return drawToken(row, truncation, uniform, workspace);
  }

  private workspaceFor(vocabSize: number): SamplingWorkspace {
    if (this.workspace?.vocabSize !== vocabSize) this.workspace = new SamplingWorkspace(vocabSize);
    return this.workspace;
  }
}

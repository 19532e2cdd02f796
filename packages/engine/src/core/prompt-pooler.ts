import type { PoolerConfig } from '../model/pooler-config';
import type { LogitsRows } from '../model-step';

/**
 * A pooling model's per-request state in the engine core: which rows of each prompt chunk it needs back from the
 * runner (the final norm's hidden states), what they add up to so far, and the vector they make once the prompt is
 * computed. Last-token pooling needs only the prompt's last row; mean pooling every row, so its requests skip the
 * prefix cache (a cached block has no hidden states), as vLLM's do.
 */
export class PromptPooler {
  private readonly pending = new Map<string, { sum: Float64Array | undefined; count: number }>();

  constructor(readonly config: PoolerConfig) {}

  /** Whether a request's prompt must be computed whole, none of it from the prefix cache. */
  get needsEveryPosition(): boolean {
    return this.config.poolingType === 'MEAN';
  }

  /** Starts a request, or starts it over after a preemption (its prompt is computed again). */
  start(requestId: string): void {
    this.pending.set(requestId, { sum: undefined, count: 0 });
  }

  has(requestId: string): boolean {
    return this.pending.has(requestId);
  }

  /** The rows a chunk of `numNew` prompt tokens after `numComputed` needs back. */
  rowsFor(numComputed: number, numNew: number, numPromptTokens: number): LogitsRows {
    if (numComputed >= numPromptTokens) return 'none';
    if (this.needsEveryPosition) return 'all';
    return numComputed + numNew === numPromptTokens ? 'last' : 'none';
  }

  /** Adds a chunk's rows (`[rows, width]`, row-major, `from` up to `to`) to the request's pool. */
  add(requestId: string, hidden: Float32Array, width: number, from: number, to: number): void {
    const state = this.pending.get(requestId);
    if (state === undefined || to <= from) return;
    // Float64 sums: a mean over thousands of rows keeps float32's precision.
    const sum = (state.sum ??= new Float64Array(width));
    if (!this.needsEveryPosition) sum.fill(0);
    for (let row = from; row < to; row += 1) {
      const offset = row * width;
      for (let column = 0; column < width; column += 1) sum[column]! += hidden[offset + column]!;
    }
    state.count = this.needsEveryPosition ? state.count + (to - from) : to - from;
  }

  /** The request's vector (its mean or last row, normalized when the config says so), and forgets the request. */
  finish(requestId: string): number[] | undefined {
    const state = this.pending.get(requestId);
    this.pending.delete(requestId);
    if (state?.sum === undefined || state.count === 0) return undefined;
    const vector = Array.from(state.sum, (value) => value / state.count);
    return this.config.normalize ? normalize(vector) : vector;
  }

  forget(requestId: string): void {
    this.pending.delete(requestId);
  }
}

/**
 * An embedding cut to its first `dimensions` entries (Matryoshka representations, the API's `dimensions`), scaled
 * back to unit length when the pooler normalizes.
 */
export function truncateEmbedding(vector: readonly number[], dimensions: number, normalized: boolean): number[] {
  if (dimensions >= vector.length) return [...vector];
  const head = vector.slice(0, dimensions);
  return normalized ? normalize(head) : head;
}

/** `vector` scaled to unit L2 length (a zero vector stays zero). */
export function normalize(vector: number[]): number[] {
  let squares = 0;
  for (const value of vector) squares += value * value;
  const norm = Math.sqrt(squares);
  return norm === 0 ? vector : vector.map((value) => value / norm);
}

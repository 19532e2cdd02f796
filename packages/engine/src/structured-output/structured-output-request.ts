import type { StructuredOutputsSpec } from '@pagoda/sampling';

/**
 * One request's structured-output state, kept by the manager beside the scheduler's request (vLLM's
 * `StructuredOutputRequest`): its constraint, whether its grammar is ready, whether its reasoning has ended, and the
 * tokens its matcher has accepted, so that a new grammar worker can replay them exactly.
 */
export class StructuredOutputRequest {
  /** `compiling` until the worker made its matcher; the scheduler holds the request until then. */
  status: 'compiling' | 'ready' = 'compiling';
  /** Tokens the matcher follows: those after the reasoning's end (all of them without a reasoning parser). */
  readonly acceptedTokenIds: number[] = [];
  /** The matcher refused a token: the output left the grammar, and it is masked no more. */
  rejected = false;

  constructor(
    readonly requestId: string,
    readonly key: string,
    readonly spec: StructuredOutputsSpec,
    /** False while the model is still reasoning: no mask applies, and tokens are not accepted. */
    public reasoningEnded: boolean,
  ) {}

  /** Whether this step's sampling needs its bitmask. */
  get needsBitmask(): boolean {
    return this.status === 'ready' && this.reasoningEnded && !this.rejected;
  }
}

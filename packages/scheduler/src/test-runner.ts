import { KVCacheManager } from '@pagoda/kv-cache';
import { Scheduler, type SchedulerConfig } from './scheduler';
import type { ModelRunnerOutput, SchedulerOutput } from './scheduler-output';

/**
 * A model runner for tests that keeps its own per-request state only from the scheduler's outputs (full data once,
 * diffs after), checks that state against what the scheduler says, and "samples" with a caller's function.
 */
export class FakeModelRunner {
  readonly tokens = new Map<string, number[]>();
  readonly blockTables = new Map<string, number[]>();
  /** Every slot's content, as the token id and position written there by the tokens each step computes. */
  private slotTokens = new Int32Array(0);
  private slotPositions = new Int32Array(0);

  constructor(
    readonly blockSize: number,
    private readonly sample: (requestId: string, tokenIds: readonly number[]) => number,
    /** Check every context slot of every request each step (`all`), or only when a request is (re)admitted. */
    private readonly checkContext: 'all' | 'admission' = 'all',
  ) {}

  execute(output: SchedulerOutput): ModelRunnerOutput {
    for (const requestId of [...output.finishedRequestIds, ...output.preemptedRequestIds]) {
      this.tokens.delete(requestId);
      this.blockTables.delete(requestId);
    }
    const sampledTokenIds: Record<string, number[]> = {};
    const run = (requestId: string, numComputedTokens: number, admitted: boolean) => {
      const tokens = this.tokens.get(requestId)!;
      const blockTable = this.blockTables.get(requestId)!;
      const count = output.numScheduledTokens[requestId]!;
      if (Math.ceil((numComputedTokens + count) / this.blockSize) > blockTable.length) {
        throw new Error(`${requestId}: block table too short for ${numComputedTokens + count} tokens`);
      }
      // The context must already be in the cache (computed earlier or a prefix hit): check its slots.
      if (admitted || this.checkContext === 'all') {
        for (let position = 0; position < numComputedTokens; position += 1) {
          const slot = this.slotOf(blockTable, position);
          if (this.slotTokens[slot] !== tokens[position] || this.slotPositions[slot] !== position) {
            throw new Error(
              `${requestId}: slot for position ${position} holds token ${this.slotTokens[slot]} at ${this.slotPositions[slot]}, expected ${tokens[position]}`,
            );
          }
        }
      }
      for (let position = numComputedTokens; position < numComputedTokens + count; position += 1) {
        const slot = this.slotOf(blockTable, position);
        this.ensureSlot(slot);
        this.slotTokens[slot] = tokens[position]!;
        this.slotPositions[slot] = position;
      }
      if (numComputedTokens + count === tokens.length) {
        const tokenId = this.sample(requestId, tokens);
        sampledTokenIds[requestId] = [tokenId];
        tokens.push(tokenId);
      }
    };
    for (const request of output.scheduledNewRequests) {
      this.tokens.set(request.requestId, [...request.tokenIds]);
      this.blockTables.set(request.requestId, [...request.blockIds]);
      run(request.requestId, request.numComputedTokens, true);
    }
    const cached = output.scheduledCachedRequests;
    cached.requestIds.forEach((requestId, index) => {
      const tokens = this.tokens.get(requestId);
      if (tokens === undefined) throw new Error(`${requestId}: cached data for a request the runner never saw`);
      const numComputedTokens = cached.numComputedTokens[index]!;
      const expected = tokens.slice(numComputedTokens, numComputedTokens + output.numScheduledTokens[requestId]!);
      if (expected.join() !== cached.newTokenIds[index]!.join()) throw new Error(`${requestId}: newTokenIds disagree with the runner`);
      this.blockTables.get(requestId)!.push(...cached.newBlockIds[index]!);
      run(requestId, numComputedTokens, false);
    });
    return { sampledTokenIds };
  }

  private ensureSlot(slot: number): void {
    if (slot < this.slotTokens.length) return;
    const size = Math.max(slot + 1, this.slotTokens.length * 2);
    const tokens = new Int32Array(size).fill(-1);
    const positions = new Int32Array(size).fill(-1);
    tokens.set(this.slotTokens);
    positions.set(this.slotPositions);
    this.slotTokens = tokens;
    this.slotPositions = positions;
  }

  private slotOf(blockTable: readonly number[], position: number): number {
    return blockTable[Math.floor(position / this.blockSize)]! * this.blockSize + (position % this.blockSize);
  }
}

export function makeScheduler(
  config: Partial<SchedulerConfig> & { numBlocks?: number; blockSize?: number } = {},
  clock: () => number = () => 0,
): Scheduler {
  const { numBlocks = 64, blockSize = 4, ...schedulerConfig } = config;
  const maxModelLen = schedulerConfig.maxModelLen ?? 256;
  return new Scheduler(
    { maxNumSeqs: 8, maxNumBatchedTokens: 64, maxModelLen, ...schedulerConfig },
    new KVCacheManager({ numBlocks, blockSize, maxModelLen }),
    clock,
  );
}

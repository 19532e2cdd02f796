/**
 * xoshiro128** (Blackman and Vigna): 128 bits of state in four 32-bit integers, fast with `Math.imul`, and good
 * enough statistically for sampling. The state is filled by SplitMix32 from the seed and a stream number, so nearby
 * seeds (and nearby streams of one seed) give unrelated sequences.
 */
export class SeededGenerator {
  private state0: number;
  private state1: number;
  private state2: number;
  private state3: number;

  /**
   * A generator for `seed`, any safe integer (negative too: its 64-bit two's-complement halves are mixed) and an
   * optional `stream`, an integer in [0, 2^32) that selects an independent stream of the same seed.
   */
  constructor(seed: number, stream = 0) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    const low = seed >>> 0;
    const high = Math.floor(seed / 2 ** 32) >>> 0;
    const streamWord = stream >>> 0;
    // Three words are bijections of the three inputs, so distinct (seed, stream) pairs give distinct states; the
    // rounds discarded below let every output depend on all of them (xoshiro's first output reads one word only).
    this.state0 = splitMix32(low);
    this.state1 = splitMix32(high ^ 0x6a09e667);
    this.state2 = splitMix32(streamWord ^ 0xbb67ae85);
    this.state3 = splitMix32((low ^ high ^ streamWord) + 0x3c6ef372);
    for (let round = 0; round < 8; round += 1) this.nextUint32();
  }

  /** A generator that continues from a given state (four 32-bit words, not all zero): for tests and checkpoints. */
  static fromState(state: readonly [number, number, number, number]): SeededGenerator {
    if ((state[0] | state[1] | state[2] | state[3]) === 0) throw new RangeError('xoshiro128** state must not be all zero');
    const generator = new SeededGenerator(0);
    generator.state0 = state[0] | 0;
    generator.state1 = state[1] | 0;
    generator.state2 = state[2] | 0;
    generator.state3 = state[3] | 0;
    return generator;
  }

  /** The next 32 random bits, as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotateLeft(Math.imul(this.state1, 5), 7), 9);
    const shifted = this.state1 << 9;
    this.state2 ^= this.state0;
    this.state3 ^= this.state1;
    this.state1 ^= this.state2;
    this.state0 ^= this.state3;
    this.state2 ^= shifted;
    this.state3 = rotateLeft(this.state3, 11);
    return result >>> 0;
  }

  /** A uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 67_108_864 + low) / 9_007_199_254_740_992;
  }
}

function rotateLeft(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}

function splitMix32(input: number): number {
  let value = (input + 0x9e3779b9) | 0;
  value = Math.imul(value ^ (value >>> 16), 0x85ebca6b);
  value = Math.imul(value ^ (value >>> 13), 0xc2b2ae35);
  return (value ^ (value >>> 16)) >>> 0;
}

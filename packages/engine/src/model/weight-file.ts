import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where one initializer's bytes lie in a {@link WeightFile}. */
export interface WeightFileEntry {
  readonly key: string;
  readonly offset: number;
  readonly byteLength: number;
}

interface PlacedEntry extends WeightFileEntry {
  /** Makes the bytes when the file is written; undefined for an all-zero entry, left as a hole of the file. */
  produce: (() => Uint8Array | Promise<Uint8Array>) | undefined;
  written: boolean;
}

/**
 * The bytes of a graph's initializers, laid out in one file that ONNX Runtime reads as external data beside the
 * model, so the weights never exist twice in memory:
 *
 * - In-memory external data is copied by ONNX Runtime (probed with onnxruntime-node 1.30: zeroing the JavaScript
 *   buffer after the session started left the outputs unchanged), so the JavaScript weights and ONNX Runtime's copy
 *   would both be resident while a session starts, and the JavaScript ones until they were dropped.
 * - From a file, ONNX Runtime maps each initializer (on the CPU): MatMulNBits and Gemm copy theirs into prepacked
 *   buffers and release the mapping; others (norms; MatMulNBits' scales, kept beside its prepacked copy) read the
 *   mapped pages, of which only the touched ones are resident. The CPU runners read the embedding's rows themselves
 *   (EmbeddingTable), through a descriptor they keep open.
 *
 * Entries are placed while a graph is built (offsets known at once, so the model can name them) and produced one
 * at a time when the file is written: a weight is read, converted or quantized, written and dropped, and the peak
 * is one tensor, not the model. Graphs built from the same weights (a profiling runner and the real one, a rank's
 * segments) share one file: an entry placed twice under the same key is written once.
 */
export class WeightFile {
  /** The file's name in its directory, as the models' external data name it. */
  static readonly fileName = 'weights.bin';
  private readonly entries: PlacedEntry[] = [];
  private readonly byKey = new Map<string, PlacedEntry>();
  private end = 0;
  private placedBytes = 0;

  /**
   * Places `byteLength` bytes under `key` (once: a key placed before keeps its place). `produce` makes them when the
   * file is written; leave it out for zeros. Large entries start on 64 KiB boundaries, which every platform can map.
   */
  place(key: string, byteLength: number, produce?: () => Uint8Array | Promise<Uint8Array>): WeightFileEntry {
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing;
    const alignment = byteLength >= 2 ** 20 ? 2 ** 16 : byteLength >= 4096 ? 4096 : 64;
    const offset = Math.ceil(this.end / alignment) * alignment;
    const entry: PlacedEntry = { key, offset, byteLength, produce, written: false };
    this.entries.push(entry);
    this.byKey.set(key, entry);
    this.end = offset + byteLength;
    this.placedBytes += byteLength;
    return entry;
  }

  /** Where `key` was placed, if it was. */
  entry(key: string): WeightFileEntry | undefined {
    return this.byKey.get(key);
  }

  /** Bytes of every entry placed (padding left out). */
  get byteLength(): number {
    return this.placedBytes;
  }

  /**
   * Writes every entry not written yet into `file`, in placement order, each produced just before it is written;
   * zeros are left as holes. The file is created if needed and sized to the last entry.
   */
  async write(file: string): Promise<void> {
    const handle = await open(file, this.entries.some((entry) => entry.written) ? 'r+' : 'w');
    try {
      for (const entry of this.entries) {
        if (entry.written) continue;
        if (entry.produce !== undefined) {
          const bytes = await entry.produce();
          if (bytes.byteLength !== entry.byteLength) {
            throw new RangeError(`weight file entry ${entry.key}: produced ${bytes.byteLength} bytes where ${entry.byteLength} were placed`);
          }
          let written = 0;
          while (written < bytes.byteLength) {
            const { bytesWritten } = await handle.write(bytes, written, bytes.byteLength - written, entry.offset + written);
            written += bytesWritten;
          }
          // Let the producer's closure (and what it read) go as soon as the bytes are on disk.
          entry.produce = undefined;
        }
        entry.written = true;
      }
      if ((await handle.stat()).size < this.end) await handle.truncate(this.end);
    } finally {
      await handle.close();
    }
  }
}

/**
 * A temporary folder holding a weight file and the models that read it, removed once their sessions have started
 * (ONNX Runtime keeps what it mapped, a CPU runner its open descriptor: POSIX systems keep a removed file's data
 * while it is mapped or open). Set `TMPDIR` to put it elsewhere: on a tmpfs the file itself occupies memory until
 * its runner is released.
 */
export class ModelFiles {
  readonly weights: WeightFile;
  private models = 0;

  private constructor(
    readonly directory: string,
    weights: WeightFile,
  ) {
    this.weights = weights;
  }

  static async create(weights: WeightFile = new WeightFile()): Promise<ModelFiles> {
    return new ModelFiles(await mkdtemp(join(tmpdir(), 'pagoda-model-')), weights);
  }

  /** The weight file's path (written by {@link writeModel}). */
  get weightsPath(): string {
    return join(this.directory, WeightFile.fileName);
  }

  /** Writes the weight file's pending entries and `model` beside it; returns the model's path. */
  async writeModel(model: Uint8Array): Promise<string> {
    await this.weights.write(this.weightsPath);
    const path = join(this.directory, `model-${this.models}.onnx`);
    this.models += 1;
    await writeFile(path, model);
    return path;
  }

  /** Removes the folder; on a platform that refuses to remove mapped files (Windows) it is left for the OS. */
  async remove(): Promise<void> {
    await rm(this.directory, { recursive: true, force: true }).catch(() => undefined);
  }
}

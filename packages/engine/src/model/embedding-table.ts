import { closeSync, openSync, readSync } from 'node:fs';
import { ModelInputError } from '../errors';
import type { PlacedRows } from './graph-builder';
import { blocksPerRow, bytesPerBlock, dequantizeRows, type QuantizedBlocks } from './quantization';

/**
 * A model's token embedding, read row by row from the weight file with `pread` and dequantized here: the CPU
 * runners' embedding lookup, in place of a Gather in the graph.
 *
 * Why not a Gather: ONNX Runtime maps the table it gathers from, and every row it reads faults in the 64 KiB of
 * the file around it (the kernel's fault-around), pages that then stay resident. As a server meets more of the
 * vocabulary its RSS grows toward a second copy of the embedding beside the head's prepacked one: up to 622 MB for
 * Qwen3-0.6B in float32, 155 MB at int8. Measured on the Qwen3-0.6B shape at int4 (8 prompts of 128 tokens, then 32
 * decode steps of random tokens): the mapped file pages grew by 145 MiB. Reads through the page cache cost no RSS
 * and about a microsecond per row, a few milliseconds for a 2,048-token prompt.
 *
 * The file stays open while the runner lives; the folder holding it may be removed once the sessions have started
 * (POSIX keeps an open file's data).
 */
export class EmbeddingTable {
  private readonly rowBytes: number;
  /** One row's codes and scales, read into and dequantized from for every quantized row. */
  private readonly row: QuantizedBlocks | undefined;
  /** The bytes of {@link row}'s scales. */
  private readonly scaleBytes: Uint8Array;

  private constructor(
    private fd: number | undefined,
    private readonly rows: PlacedRows,
  ) {
    const blocks = blocksPerRow(rows.columns);
    this.rowBytes = rows.format === 'float32' ? rows.columns * 4 : blocks * bytesPerBlock(rows.format);
    this.row =
      rows.format === 'float32'
        ? undefined
        : { format: rows.format, rows: 1, columns: rows.columns, codes: new Uint8Array(this.rowBytes), scales: new Float32Array(blocks) };
    this.scaleBytes = new Uint8Array(this.row?.scales.buffer ?? new ArrayBuffer(0));
  }

  /** Opens the weight file at `path`, which holds `rows` (placed by GraphBuilder.placeRows). */
  static open(path: string, rows: PlacedRows): EmbeddingTable {
    return new EmbeddingTable(openSync(path, 'r'), rows);
  }

  /** The rows of `tokenIds`, `[tokenIds.length, columns]` float32; an id outside the table is a ModelInputError. */
  lookup(tokenIds: ArrayLike<number>): Float32Array {
    const { rows } = this;
    const { columns } = rows;
    const output = new Float32Array(tokenIds.length * columns);
    const bytes = new Uint8Array(output.buffer);
    for (let index = 0; index < tokenIds.length; index += 1) {
      const id = tokenIds[index]!;
      if (!Number.isInteger(id) || id < 0 || id >= rows.rows) {
        throw new ModelInputError(`token id ${id} is outside the embedding's ${rows.rows} rows`);
      }
      if (rows.format === 'float32') {
        this.read(bytes.subarray(index * this.rowBytes, (index + 1) * this.rowBytes), rows.values.offset + id * this.rowBytes);
        continue;
      }
      const row = this.row!;
      this.read(row.codes, rows.codes.offset + id * this.rowBytes);
      this.read(this.scaleBytes, rows.scales.offset + id * this.scaleBytes.byteLength);
      dequantizeRows(row, output.subarray(index * columns, (index + 1) * columns));
    }
    return output;
  }

  /** Closes the file; lookups after it throw. */
  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  /** Fills `target` from `position` of the file. */
  private read(target: Uint8Array, position: number): void {
    if (this.fd === undefined) throw new Error('the embedding table is closed');
    let done = 0;
    while (done < target.byteLength) {
      const count = readSync(this.fd, target, done, target.byteLength - done, position + done);
      if (count === 0) throw new RangeError(`the weight file ends before the embedding row at byte ${position}`);
      done += count;
    }
  }
}

import { fixturePath } from '@pagoda/fixtures';
import { readGgufFileInfo } from 'node-llama-cpp';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GgufValue, ggufAlignment, llamaCppVocabulary, permuteRows, writeGguf } from '@pagoda/engine/test';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'pagoda-bench-gguf-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('writeGguf', () => {
  it("writes metadata and aligned F32 tensors that node-llama-cpp's own GGUF reader reads back", async () => {
    const file = join(directory, 'small.gguf');
    const metadata = new Map<string, GgufValue>([
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['llama.block_count', { type: 'uint32', value: 7 }],
      ['llama.rope.freq_base', { type: 'float32', value: 10000 }],
      ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
      ['tokenizer.ggml.tokens', { type: 'array', elementType: 'string', values: ['<unk>', 'é', 'b'] }],
      ['tokenizer.ggml.token_type', { type: 'array', elementType: 'int32', values: [2, 1, -1] }],
    ]);
    const matrix = Float32Array.from({ length: 6 }, (_, index) => index + 0.5);
    const vector = Float32Array.from([1, 2, 3]);
    const bytes32 = (values: Float32Array) => () => new Uint8Array(values.buffer);
    await writeGguf(file, metadata, [
      { name: 'm', shape: [2, 3], type: 'F32', data: bytes32(matrix) },
      { name: 'v', shape: [3], type: 'F32', data: bytes32(vector) },
    ]);
    const info = await readGgufFileInfo(file, { logWarnings: false });
    expect(info.version).toBe(3);
    expect(info.metadata.general.architecture).toBe('llama');
    const llama = (info.metadata as unknown as { llama: { block_count: number; rope: { freq_base: number } } }).llama;
    expect(llama.block_count).toBe(7);
    expect(llama.rope.freq_base).toBe(10000);
    expect(info.metadata.tokenizer?.ggml.tokens).toEqual(['<unk>', 'é', 'b']);
    expect(info.metadata.tokenizer?.ggml.token_type).toEqual([2, 1, -1]);
    expect(info.metadata.tokenizer?.ggml.add_bos_token).toBe(true);
    const tensors = info.fullTensorInfo!;
    // dimensions fastest first: a [2, 3] row-major matrix is ne = [3, 2]
    expect(tensors.map((tensor) => [tensor.name, tensor.dimensions.map(Number), tensor.ggmlType, Number(tensor.offset)])).toEqual([
      ['m', [3, 2], 0, 0],
      ['v', [3], 0, 32],
    ]);
    const bytes = await readFile(file);
    const dataStart = Number(tensors[0]!.fileOffset);
    expect(dataStart % ggufAlignment).toBe(0);
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + dataStart, bytes.byteOffset + dataStart + 24))).toEqual(matrix);
    const vectorStart = Number(tensors[1]!.fileOffset);
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + vectorStart, bytes.byteOffset + vectorStart + 12))).toEqual(vector);
    expect((await stat(file)).size).toBe(vectorStart + 32);
  });
});

describe('permuteRows', () => {
  it('interleaves the two rotate-half halves of each head', () => {
    // 2 heads of dimension 4, one column: HF rows per head are [a0 a1 | b0 b1]; llama.cpp wants [a0 b0 a1 b1]
    const rows = Float32Array.from([0, 1, 2, 3, 10, 11, 12, 13]);
    expect([...permuteRows(rows, 8, 1, 2)]).toEqual([0, 2, 1, 3, 10, 12, 11, 13]);
  });

  it('moves whole rows', () => {
    const rows = Float32Array.from([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]); // 4 rows of 2 columns, one head
    expect([...permuteRows(rows, 4, 2, 1)]).toEqual([0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5]);
  });
});

describe('llamaCppVocabulary', () => {
  it('marks the tiny-llama tokens as llama.cpp expects and pads to the model vocabulary', async () => {
    const tokenizer = JSON.parse(await readFile(fixturePath('tiny-llama', 'tokenizer.json'), 'utf8')) as Parameters<typeof llamaCppVocabulary>[0];
    const vocabulary = llamaCppVocabulary(tokenizer, 32005);
    expect(vocabulary.tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(vocabulary.types.slice(0, 4)).toEqual([2, 3, 3, 6]);
    expect(vocabulary.types.filter((type) => type === 6)).toHaveLength(256);
    expect(vocabulary.tokens.slice(32000)).toEqual(['<unused_32000>', '<unused_32001>', '<unused_32002>', '<unused_32003>', '<unused_32004>']);
    expect(vocabulary.types[32004]).toBe(5);
  });

  it('refuses a vocabulary without the 256 byte tokens', () => {
    expect(() => llamaCppVocabulary({ model: { type: 'BPE', vocab: { a: 0, b: 1 } } }, 2)).toThrow(/256 byte tokens/);
  });
});

import { fixturePath } from '@pagoda/fixtures';
import { copyFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CheckpointError,
  float16ToFloat32,
  loadCheckpointWeights,
  loadModelConfig,
  PagodaEngineError,
  readSafetensorsHeader,
} from '../index';
import { checkpointCopy, readRawTensors, writeSafetensors } from './test-safetensors';

function bytesOf(array: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

async function loadError(modelDir: string): Promise<CheckpointError> {
  const config = await loadModelConfig(modelDir);
  const error = await loadCheckpointWeights(modelDir, config).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(CheckpointError);
  expect(PagodaEngineError.isInstance(error)).toBe(true);
  return error as CheckpointError;
}

describe('safetensors loading', () => {
  it('widens bf16 and f16 to float32 exactly, subnormals and signs included', async () => {
    const llama = fixturePath('tiny-llama');
    const dir = await checkpointCopy(llama);
    const tensors = await readRawTensors(join(llama, 'model.safetensors'));
    // Re-store three tensors in the other dtypes, with values whose float32 widening is known.
    const norm = tensors.find((tensor) => tensor.name === 'model.norm.weight')!;
    const normBits = new Uint16Array(64).fill(0x3fc0); // bf16 1.5
    normBits[1] = 0xc040; // bf16 -3
    norm.bytes = bytesOf(normBits);
    const layerNorm = tensors.find((tensor) => tensor.name === 'model.layers.0.input_layernorm.weight')!;
    const halfBits = new Uint16Array(64).fill(0xc000); // f16 -2
    halfBits[1] = 0x0001; // the smallest f16 subnormal, 2^-24
    halfBits[2] = 0x3555; // f16 0.333251953125
    layerNorm.dtype = 'F16';
    layerNorm.bytes = bytesOf(halfBits);
    const postNorm = tensors.find((tensor) => tensor.name === 'model.layers.0.post_attention_layernorm.weight')!;
    postNorm.dtype = 'F32';
    postNorm.bytes = bytesOf(Float32Array.from({ length: 64 }, (_, index) => index / 7));
    await writeSafetensors(join(dir, 'model.safetensors'), tensors);

    const weights = await loadCheckpointWeights(dir, await loadModelConfig(dir));
    const values = (name: string) => weights.get(name)!.read() as Promise<Float32Array>;
    const normValues = await values('model.norm.weight');
    expect([normValues[0], normValues[1]]).toEqual([1.5, -3]);
    const halfValues = await values('model.layers.0.input_layernorm.weight');
    expect([halfValues[0], halfValues[1], halfValues[2]]).toEqual([-2, 2 ** -24, 0.333251953125]);
    expect((await values('model.layers.0.post_attention_layernorm.weight'))[7]).toBe(Math.fround(1));
    // A range of rows reads those rows alone, widened the same way.
    const embedding = weights.get('model.embed_tokens.weight')!;
    const allRows = (await embedding.read()) as Float32Array;
    expect(await embedding.read({ start: 5, end: 9 })).toEqual(allRows.subarray(5 * 64, 9 * 64));
    expect(float16ToFloat32(0x7c00)).toBe(Infinity);
  });

  it('loads a sharded checkpoint through model.safetensors.index.json, taking tensors from every shard', async () => {
    const dir = fixturePath('tiny-qwen3');
    const config = await loadModelConfig(dir);
    const weights = await loadCheckpointWeights(dir, config);
    expect(weights.get('model.embed_tokens.weight')!.shape).toEqual([151936, 64]); // shard 1
    expect(weights.get('model.layers.2.self_attn.q_norm.weight')!.shape).toEqual([32]); // shard 2
    expect(weights.has('lm_head.weight')).toBe(false); // tied to the embeddings
  });

  it('reports loading progress up to the total byte count, as the weights are read', async () => {
    const dir = fixturePath('tiny-llama');
    const reports: [number, number][] = [];
    const weights = await loadCheckpointWeights(dir, await loadModelConfig(dir), { onProgress: (loaded, total) => reports.push([loaded, total]) });
    expect(reports).toEqual([]);
    for (const tensor of weights.values()) await tensor.read();
    const [loaded, total] = reports.at(-1)!;
    expect(loaded).toBe(total);
    expect(reports.every(([value], index) => index === 0 || value >= reports[index - 1]![0])).toBe(true);
  });

  it('names the file and the tensor when a tensor is missing', async () => {
    const llama = fixturePath('tiny-llama');
    const dir = await checkpointCopy(llama);
    const tensors = await readRawTensors(join(llama, 'model.safetensors'));
    await writeSafetensors(
      join(dir, 'model.safetensors'),
      tensors.filter((tensor) => tensor.name !== 'model.layers.1.mlp.up_proj.weight'),
    );
    const error = await loadError(dir);
    expect(error.code).toBe('checkpoint_tensor_missing');
    expect(error.tensor).toBe('model.layers.1.mlp.up_proj.weight');
    expect(error.file).toBe(join(dir, 'model.safetensors'));
    expect(error.message).toContain(join(dir, 'model.safetensors'));
    expect(error.message).toContain('model.layers.1.mlp.up_proj.weight');
  });

  it('names the file, the tensor and both shapes when a tensor has the wrong shape', async () => {
    const llama = fixturePath('tiny-llama');
    const dir = await checkpointCopy(llama);
    const tensors = await readRawTensors(join(llama, 'model.safetensors'));
    const keyProjection = tensors.find((tensor) => tensor.name === 'model.layers.0.self_attn.k_proj.weight')!;
    keyProjection.shape = [64, 32]; // the same bytes as [32, 64], transposed
    await writeSafetensors(join(dir, 'model.safetensors'), tensors);
    const error = await loadError(dir);
    expect(error.code).toBe('checkpoint_tensor_shape');
    expect(error.tensor).toBe('model.layers.0.self_attn.k_proj.weight');
    expect(error.expectedShape).toEqual([32, 64]);
    expect(error.actualShape).toEqual([64, 32]);
    expect(error.message).toContain('[64, 32] where the config implies [32, 64]');
  });

  it('names the file and the tensor whose data runs past the end of a truncated file', async () => {
    const llama = fixturePath('tiny-llama');
    const dir = await checkpointCopy(llama);
    const file = join(dir, 'model.safetensors');
    await copyFile(join(llama, 'model.safetensors'), file);
    const entries = [...(await readSafetensorsHeader(file)).values()];
    const last = entries.reduce((latest, entry) => (entry.end > latest.end ? entry : latest));
    await truncate(file, last.end - 1000);
    const error = await loadError(dir);
    expect(error.code).toBe('checkpoint_file_truncated');
    expect(error.file).toBe(file);
    const cutTensors = entries.filter((entry) => entry.end > last.end - 1000).map((entry) => entry.name);
    expect(cutTensors).toContain(error.tensor);
    expect(error.message).toContain(`ends at byte ${last.end - 1000}`);
  });
});

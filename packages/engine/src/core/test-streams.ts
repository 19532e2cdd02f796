import type { RequestOutput } from './request-output';

/** Reads a stream of deltas to its end (tests). */
export async function collect(stream: AsyncIterable<RequestOutput>): Promise<RequestOutput[]> {
  const deltas: RequestOutput[] = [];
  for await (const delta of stream) deltas.push(delta);
  return deltas;
}

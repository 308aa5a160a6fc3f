// The logits a decoder step is read for: each row's last real position (rows are right-padded).
import type * as ort from 'onnxruntime-node';

/** logits [B, L, V] -> per row b, the V logits at position lens[b] - 1 (views into the tensor);
 *  a runtime graph that computed one position per row (L = 1) has it at position 0. */
export function lastLogits(t: ort.Tensor, lens: readonly number[]): Float32Array[] {
  const [, L, V] = t.dims.map(Number);
  const data = t.data as Float32Array;
  return lens.map((n, b) => {
    const at = b * L + Math.min(n, L) - 1;
    return data.subarray(at * V, (at + 1) * V);
  });
}

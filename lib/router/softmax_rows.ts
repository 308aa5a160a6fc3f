// softmax of each row of a [n, E] block of logits, in id order, for the router's head at training
// (lib/router/train.ts) and at routing time (lib/router/situation_outputs.ts). kernels.topkSoftmax
// with k = E is the whole softmax, sorted by weight; it is scattered back to id order here.
import { topkSoftmax } from '../kernels';

export function softmaxRows(logits: Float32Array, E: number): Float32Array {
  const n = logits.length / E;
  const sorted = topkSoftmax(logits, E, E);
  const p = new Float32Array(n * E);
  for (let r = 0; r < n; r++) for (let j = 0; j < E; j++) p[r * E + sorted.ids[r * E + j]] = sorted.weights[r * E + j];
  return p;
}

// topkSoftmax: routing probabilities and the k best experts per row.
//   logits [T, experts] -> ids [T, k] (best first, ties to the lower id), weights [T, k]
//   weights = softmax over all experts, then (renormalize) divided by their sum over the k.
import { binding, TopkResult } from './binding';

export interface TopkOptions {
  renormalize?: boolean;
}

export function topkSoftmax(logits: Float32Array, experts: number, k: number, opts: TopkOptions = {}): TopkResult {
  return binding().topkSoftmax(logits, experts, k, opts?.renormalize ?? false);
}

// async: an argument error rejects the Promise instead of throwing.
export async function topkSoftmaxAsync(
  logits: Float32Array, experts: number, k: number, opts: TopkOptions = {},
): Promise<TopkResult> {
  return binding().topkSoftmaxAsync(logits, experts, k, opts?.renormalize ?? false);
}

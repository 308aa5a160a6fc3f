// mergeExperts: a fixed mix compiled into a base weight.
//   in_out (default): W [din, dout],  W' = W + Σ_j w_j s_j (B_j A_j)ᵀ   (torch.onnx MatMul weights)
//   out_in:           W [dout, din],  W' = W + Σ_j w_j s_j  B_j A_j     (nn.Linear, Gemm transB)
// Returns a new array unless opts.inPlace.
import { typeError } from '../errors';
import { binding, LAYOUT_CODES } from './binding';
import { nativeBank } from './lora_bank';

export interface MergeOptions {
  layout?: 'in_out' | 'out_in';
  inPlace?: boolean;
}

function layoutCode(opts: MergeOptions): number {
  const layout = opts?.layout ?? 'in_out';
  if (typeof layout !== 'string' || !Object.hasOwn(LAYOUT_CODES, layout)) throw typeError('opts.layout', "'in_out' or 'out_in'", layout);
  return LAYOUT_CODES[layout];
}

export function mergeExperts(
  bank: unknown, ids: Int32Array, weights: Float32Array, w: Float32Array, opts: MergeOptions = {},
): Float32Array {
  return binding().mergeExperts(nativeBank(bank), ids, weights, w, layoutCode(opts), opts?.inPlace ?? false);
}

// async: an argument error rejects the Promise instead of throwing.
export async function mergeExpertsAsync(
  bank: unknown, ids: Int32Array, weights: Float32Array, w: Float32Array, opts: MergeOptions = {},
): Promise<Float32Array> {
  return binding().mergeExpertsAsync(nativeBank(bank), ids, weights, w, layoutCode(opts), opts?.inPlace ?? false);
}

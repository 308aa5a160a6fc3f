// mergeExperts: a fixed mix compiled into a base weight.
//   in_out (default): W [din, dout],  W' = W + Σ_j w_j s_j (B_j A_j)ᵀ   (torch.onnx MatMul weights)
//   out_in:           W [dout, din],  W' = W + Σ_j w_j s_j  B_j A_j     (nn.Linear, Gemm transB)
// Returns a new array unless opts.inPlace. With a bank created with device: 'cuda', ids,
// weights and w are DeviceTensors and so is the result.
import { typeError } from '../errors';
import { binding, LAYOUT_CODES } from './binding';
import type { DeviceTensor, F32Input as F32, I32Input as I32 } from './device';
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
  bank: unknown, ids: Int32Array, weights: Float32Array, w: Float32Array, opts?: MergeOptions): Float32Array;
export function mergeExperts(
  bank: unknown, ids: DeviceTensor<'i32'>, weights: DeviceTensor<'f32'>, w: DeviceTensor<'f32'>, opts?: MergeOptions,
): DeviceTensor<'f32'>;
export function mergeExperts(bank: unknown, ids: I32, weights: F32, w: F32, opts?: MergeOptions): F32;
export function mergeExperts(bank: unknown, ids: I32, weights: F32, w: F32, opts: MergeOptions = {}): F32 {
  return binding().mergeExperts(nativeBank(bank), ids, weights, w, layoutCode(opts), opts?.inPlace ?? false) as F32;
}

// async: an argument error rejects the Promise instead of throwing.
export async function mergeExpertsAsync(
  bank: unknown, ids: Int32Array, weights: Float32Array, w: Float32Array, opts?: MergeOptions): Promise<Float32Array>;
export async function mergeExpertsAsync(
  bank: unknown, ids: DeviceTensor<'i32'>, weights: DeviceTensor<'f32'>, w: DeviceTensor<'f32'>, opts?: MergeOptions,
): Promise<DeviceTensor<'f32'>>;
export async function mergeExpertsAsync(bank: unknown, ids: I32, weights: F32, w: F32, opts?: MergeOptions): Promise<F32>;
export async function mergeExpertsAsync(bank: unknown, ids: I32, weights: F32, w: F32, opts: MergeOptions = {}): Promise<F32> {
  return (await binding().mergeExpertsAsync(
    nativeBank(bank), ids, weights, w, layoutCode(opts), opts?.inPlace ?? false)) as F32;
}

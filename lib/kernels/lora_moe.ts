// loraMoe (SGMV/BGMV): y[t] += Σ_j w[t,j] · s[e] · B_e (A_e x[t]),  e = ids[t,j], -1 = none
//   x [T, din], ids [T, k], weights [T, k] -> y [T, dout] (new, or opts.y accumulated into)
// With a bank created with device: 'cuda', every array is a DeviceTensor and y is one too.
import { binding } from './binding';
import type { DeviceTensor, F32Input as F32, I32Input as I32 } from './device';
import { nativeBank } from './lora_bank';

export interface LoraMoeOptions<Y extends F32 = F32> {
  /** Accumulate into this [T, dout] array (and return it) instead of a new zeroed one. */
  y?: Y;
}

export function loraMoe(
  bank: unknown, x: Float32Array, ids: Int32Array, weights: Float32Array, opts?: LoraMoeOptions<Float32Array>,
): Float32Array;
export function loraMoe(
  bank: unknown, x: DeviceTensor<'f32'>, ids: DeviceTensor<'i32'>, weights: DeviceTensor<'f32'>,
  opts?: LoraMoeOptions<DeviceTensor<'f32'>>,
): DeviceTensor<'f32'>;
export function loraMoe(bank: unknown, x: F32, ids: I32, weights: F32, opts?: LoraMoeOptions): F32;
export function loraMoe(bank: unknown, x: F32, ids: I32, weights: F32, opts: LoraMoeOptions = {}): F32 {
  return binding().loraMoe(nativeBank(bank), x, ids, weights, opts?.y) as F32;
}

// async: an argument error rejects the Promise instead of throwing.
export async function loraMoeAsync(
  bank: unknown, x: Float32Array, ids: Int32Array, weights: Float32Array, opts?: LoraMoeOptions<Float32Array>,
): Promise<Float32Array>;
export async function loraMoeAsync(
  bank: unknown, x: DeviceTensor<'f32'>, ids: DeviceTensor<'i32'>, weights: DeviceTensor<'f32'>,
  opts?: LoraMoeOptions<DeviceTensor<'f32'>>,
): Promise<DeviceTensor<'f32'>>;
export async function loraMoeAsync(bank: unknown, x: F32, ids: I32, weights: F32, opts?: LoraMoeOptions): Promise<F32>;
export async function loraMoeAsync(bank: unknown, x: F32, ids: I32, weights: F32, opts: LoraMoeOptions = {}): Promise<F32> {
  return (await binding().loraMoeAsync(nativeBank(bank), x, ids, weights, opts?.y)) as F32;
}

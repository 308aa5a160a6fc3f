// loraMoe (SGMV/BGMV): y[t] += Σ_j w[t,j] · s[e] · B_e (A_e x[t]),  e = ids[t,j], -1 = none
//   x [T, din], ids [T, k], weights [T, k] -> y [T, dout] (new, or opts.y accumulated into)
import { binding } from './binding';
import { nativeBank } from './lora_bank';

export interface LoraMoeOptions {
  /** Accumulate into this [T, dout] array (and return it) instead of a new zeroed one. */
  y?: Float32Array;
}

export function loraMoe(
  bank: unknown, x: Float32Array, ids: Int32Array, weights: Float32Array, opts: LoraMoeOptions = {},
): Float32Array {
  return binding().loraMoe(nativeBank(bank), x, ids, weights, opts?.y);
}

// async: an argument error rejects the Promise instead of throwing.
export async function loraMoeAsync(
  bank: unknown, x: Float32Array, ids: Int32Array, weights: Float32Array, opts: LoraMoeOptions = {},
): Promise<Float32Array> {
  return binding().loraMoeAsync(nativeBank(bank), x, ids, weights, opts?.y);
}

// foldExperts: each request's mix as one rank-R adapter in its batch slot (what the injected
// ONNX graph takes as A_in / B_in).
//   ids, weights [B, k];  out.a [numSlots, din, R], out.b [numSlots, R, dout];  R >= k * rank
//   slot s = out.slots[i] (default i):  a[s] = [A_e1; ...; A_ek]ᵀ,  b[s] = [w1 s1 B_e1ᵀ; ...]
//   unused columns/rows and id -1 blocks are zero; other slots are untouched.
// With a bank created with device: 'cuda', ids, weights, out.a, out.b and out.slots are all
// DeviceTensors.
import { typeError } from '../errors';
import { binding } from './binding';
import type { F32Input as F32, I32Input as I32 } from './device';
import { nativeBank } from './lora_bank';

export interface FoldOutput {
  a: F32;
  b: F32;
  rankCapacity: number;
  slots?: I32;
}

function outArgs(out: FoldOutput): [F32, F32, number, I32 | undefined] {
  if (typeof out !== 'object' || out === null) throw typeError('out', 'an object { a, b, rankCapacity, slots? }', out);
  return [out.a, out.b, out.rankCapacity, out.slots];
}

export function foldExperts(bank: unknown, ids: I32, weights: F32, k: number, out: FoldOutput): void {
  binding().foldExperts(nativeBank(bank), ids, weights, k, ...outArgs(out));
}

// async: an argument error rejects the Promise instead of throwing.
export async function foldExpertsAsync(
  bank: unknown, ids: I32, weights: F32, k: number, out: FoldOutput,
): Promise<void> {
  return binding().foldExpertsAsync(nativeBank(bank), ids, weights, k, ...outArgs(out));
}

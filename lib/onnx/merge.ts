// Merging a fixed mix into the base weights: W' = W + Σ_j w_j s_j (B_j A_j)ᵀ per adapted layer
// (kernels.mergeExperts), written as a plain ONNX model that runs at the base model's speed.
import { LoraBank, mergeExperts } from '../kernels';
import { LinearTarget } from './targets';
import { encodeLike, tensorFloat32 } from './tensor_data';

/** One PEFT module's part of a target: its bank, the mix over the bank's experts, its columns. */
export interface MergePart {
  bank: LoraBank;
  ids: Int32Array;
  weights: Float32Array;
  /** first output column of this module in the (possibly fused) base weight */
  offset: number;
  dout: number;
}

/** New bytes for the target's weight initializer, in its own dtype. */
export function mergeTarget(target: LinearTarget, parts: MergePart[], sourceDir: string): Uint8Array {
  if (target.kind === 'MatMulNBits' || !target.weight) {
    throw new Error(
      `Cannot merge into ${target.path}: its base weight is quantized (${target.kind}); ` +
        'serve this model with injected adapters instead of a merged copy',
    );
  }
  const W = tensorFloat32(target.weight, sourceDir);
  const { din, dout } = target;
  for (const part of parts) {
    if (part.ids.length === 0) continue;
    if (target.layout === 'out_in') {
      // rows [offset, offset + dout) of W [dout_total, din] are this module's W_part [dout, din]
      const rows = W.subarray(part.offset * din, (part.offset + part.dout) * din);
      mergeExperts(part.bank, part.ids, part.weights, rows, { layout: 'out_in', inPlace: true });
    } else if (part.dout === dout) {
      mergeExperts(part.bank, part.ids, part.weights, W, { layout: 'in_out', inPlace: true });
    } else {
      // columns of W [din, dout_total]: gather, merge, scatter back
      const cols = new Float32Array(din * part.dout);
      for (let i = 0; i < din; i++) cols.set(W.subarray(i * dout + part.offset, i * dout + part.offset + part.dout), i * part.dout);
      mergeExperts(part.bank, part.ids, part.weights, cols, { layout: 'in_out', inPlace: true });
      for (let i = 0; i < din; i++) W.set(cols.subarray(i * part.dout, (i + 1) * part.dout), i * dout + part.offset);
    }
  }
  return encodeLike(target.weight, W);
}

// Reference merge_experts in float64.
//   in_out: W[i, o] += Σ_j c_j Σ_q A_e[q, i] B_e[o, q]      (W [din, dout])
//   out_in: W[o, i] += Σ_j c_j Σ_q B_e[o, q] A_e[q, i]      (W [dout, din])
import { RefBank } from './bank';

export function refMergeExperts(
  bank: RefBank, ids: ArrayLike<number>, w: ArrayLike<number>, W: ArrayLike<number>,
  layout: 'in_out' | 'out_in' = 'in_out',
): Float64Array {
  const { din, dout, rank } = bank;
  const out = Float64Array.from(W);
  for (let j = 0; j < ids.length; j++) {
    const e = ids[j];
    if (e < 0) continue;
    const c = w[j] * bank.scales[e];
    for (let i = 0; i < din; i++) {
      for (let o = 0; o < dout; o++) {
        let s = 0;
        for (let q = 0; q < bank.ranks[e]; q++) s += bank.a[(e * rank + q) * din + i] * bank.b[(e * dout + o) * rank + q];
        out[layout === 'in_out' ? i * dout + o : o * din + i] += c * s;
      }
    }
  }
  return out;
}

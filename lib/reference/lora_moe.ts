// Reference lora_moe in float64: the loops of the definition, nothing fused.
//   y[t, o] += Σ_j w[t,j] s[e] Σ_q B_e[o, q] Σ_i A_e[q, i] x[t, i],   e = ids[t, j] >= 0, q < r_e
import { RefBank } from './bank';

export function refLoraMoe(
  bank: RefBank, x: ArrayLike<number>, ids: ArrayLike<number>, w: ArrayLike<number>, y?: ArrayLike<number>,
): Float64Array {
  const { din, dout, rank } = bank;
  const T = x.length / din;
  const k = T > 0 ? ids.length / T : 0;
  const out = new Float64Array(T * dout);
  if (y) for (let i = 0; i < out.length; i++) out[i] = y[i];
  const h = new Float64Array(rank);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j];
      if (e < 0) continue;
      const re = bank.ranks[e];
      const c = w[t * k + j] * bank.scales[e];
      for (let q = 0; q < re; q++) {
        let s = 0;
        const aRow = (e * rank + q) * din;
        for (let i = 0; i < din; i++) s += bank.a[aRow + i] * x[t * din + i];
        h[q] = s;
      }
      for (let o = 0; o < dout; o++) {
        let s = 0;
        const bRow = (e * dout + o) * rank;
        for (let q = 0; q < re; q++) s += bank.b[bRow + q] * h[q];
        out[t * dout + o] += c * s;
      }
    }
  }
  return out;
}

// Reference fold_experts in float64: writes each request's A_cat / B_cat into its slot.
//   a [S, din, R]: a[s, i, j*rank + q] = A_e[q, i]
//   b [S, R, dout]: b[s, j*rank + q, o] = w[b,j] s[e] B_e[o, q]      (q < r_e, e = ids[b, j] >= 0)
import { RefBank } from './bank';

export function refFoldExperts(
  bank: RefBank, ids: ArrayLike<number>, w: ArrayLike<number>, k: number,
  out: { a: Float64Array | Float32Array; b: Float64Array | Float32Array; rankCapacity: number; slots?: ArrayLike<number> },
): void {
  const { din, dout, rank } = bank;
  const R = out.rankCapacity;
  const B = ids.length / k;
  for (let r = 0; r < B; r++) {
    const s = out.slots ? out.slots[r] : r;
    out.a.fill(0, s * din * R, (s + 1) * din * R);
    out.b.fill(0, s * R * dout, (s + 1) * R * dout);
    for (let j = 0; j < k; j++) {
      const e = ids[r * k + j];
      if (e < 0) continue;
      const c = w[r * k + j] * bank.scales[e];
      for (let q = 0; q < bank.ranks[e]; q++) {
        for (let i = 0; i < din; i++) out.a[(s * din + i) * R + j * rank + q] = bank.a[(e * rank + q) * din + i];
        for (let o = 0; o < dout; o++) out.b[(s * R + j * rank + q) * dout + o] = c * bank.b[(e * dout + o) * rank + q];
      }
    }
  }
}

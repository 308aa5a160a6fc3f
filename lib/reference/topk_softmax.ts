// Reference topk_softmax in float64 (see lib/kernels/topk_softmax.ts for the contract).
export function refTopkSoftmax(
  logits: ArrayLike<number>, experts: number, k: number, renormalize = false,
): { ids: Int32Array; weights: Float64Array } {
  const T = logits.length / experts;
  const ids = new Int32Array(T * k);
  const weights = new Float64Array(T * k);
  for (let t = 0; t < T; t++) {
    const row = Array.from({ length: experts }, (_, e) => logits[t * experts + e]);
    if (row.some((v) => Number.isNaN(v) || v === Infinity) || row.every((v) => v === -Infinity)) {
      throw new RangeError(`row ${t} of logits has a NaN, +Infinity or no finite value`);
    }
    const m = Math.max(...row);
    const p = row.map((v) => Math.exp(v - m));
    const sum = p.reduce((s, v) => s + v, 0);
    const order = row.map((_, e) => e).sort((a, b) => row[b] - row[a] || a - b);
    let kept = 0;
    for (let j = 0; j < k; j++) {
      ids[t * k + j] = order[j];
      weights[t * k + j] = p[order[j]] / sum;
      kept += weights[t * k + j];
    }
    if (renormalize) for (let j = 0; j < k; j++) weights[t * k + j] /= kept;
  }
  return { ids, weights };
}

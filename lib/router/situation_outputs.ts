// A head that answers situations (router.json "situations") routes through the table:
//   p     = softmax(logits)                       [C]  via kernels.topkSoftmax (softmaxRows)
//   s     = p^sharpen / Σ p^sharpen                     sharpen > 1 leans on the likeliest situation's pair
//   w_e   = Σ_c s_c · t_{c,e}                     [E]  t_c: situation c's weights on its experts, summing to 1
//   logit = ln(w_e + 1e-6)                             so the router's softmax gives w back (to 1e-6)
// Predicting the situation and then its experts lets a linear head separate C situations
// instead of E overlapping expert marginals.
import type { SituationOutputs } from './router_config';
import { targetDistribution } from './situations';
import { softmaxRows } from './softmax_rows';

/** t [C, E]: each situation's distribution over `experts` (its training target, situations.ts). */
export function situationTable(outputs: SituationOutputs, experts: readonly string[]): Float32Array {
  const table = { weights: outputs.weights, situations: outputs.names.map((name, c) => ({ name, experts: outputs.experts[c] })) };
  const t = new Float32Array(outputs.names.length * experts.length);
  outputs.names.forEach((name, c) => t.set(targetDistribution(table, name, experts), c * experts.length));
  return t;
}

/**
 * A distribution over situations -> the expert distribution w (sharpened as the table says). The
 * power is taken in log space, s_c = exp(k ln p_c - max), so a large k on a flat p cannot underflow
 * to all zeros.
 */
export function expertsOfSituations(p: Float32Array, table: Float32Array, sharpen: number): Float32Array {
  const C = p.length;
  const E = table.length / C;
  const logs = Float64Array.from(p, (v) => (v > 0 ? sharpen * Math.log(v) : -Infinity));
  const top = Math.max(...logs);
  const s = logs.map((l) => Math.exp(l - top));
  const sum = s.reduce((a, v) => a + v, 0);
  const w = new Float32Array(E);
  for (let c = 0; c < C; c++) {
    if (s[c] === 0) continue;
    for (let e = 0; e < E; e++) w[e] += (s[c] / sum) * table[c * E + e];
  }
  return w;
}

/** Situation logits -> expert logits for routeFromLogits. */
export function expertLogitsOfSituations(logits: Float32Array, table: Float32Array, sharpen: number): Float32Array {
  const w = expertsOfSituations(softmaxRows(logits, logits.length), table, sharpen);
  return Float32Array.from(w, (v) => Math.log(v + 1e-6));
}

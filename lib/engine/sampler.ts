// Next-token choice from one row of logits [vocab]:
//   1. repetition penalty (CTRL / transformers): for every token already in the sequence,
//      logit > 0 ? logit / p : logit * p
//   2. temperature 0 -> argmax (ties -> the lower id); else logits / T
//   3. top-k: keep the tokens whose logit is at least the k-th largest (0 = all)
//   4. softmax over what is kept;  5. top-p: keep the most likely tokens until their probability
//      reaches p (a threshold on probability, so ties at the threshold are all kept)
//   6. draw u in [0, 1) from the request's rng and walk the kept tokens in id order.
// Thresholds come from a sorted copy (a native typed-array sort) instead of sorting ids with a
// comparator, which costs milliseconds per row and step at vocabularies of 32k and more.
import { Rng } from './rng';

export interface SamplingParams {
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
}

export const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

export function sampleToken(logits: Float32Array, params: SamplingParams, seen: readonly number[], rng: Rng): number {
  let x = logits;
  if (params.repetitionPenalty !== 1 && seen.length > 0) {
    x = Float32Array.from(logits);
    const p = params.repetitionPenalty;
    for (const t of new Set(seen)) {
      if (t < x.length) x[t] = x[t] > 0 ? x[t] / p : x[t] * p;
    }
  }
  if (params.temperature === 0) return argmax(x);
  const V = x.length;
  const top = x[argmax(x)];
  let floor = -Infinity;
  if (params.topK > 0 && params.topK < V) floor = kthLargest(x, params.topK);
  const invT = 1 / params.temperature;
  // probabilities of the kept tokens, 0 for the others
  const probs = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) {
    if (x[i] >= floor) {
      probs[i] = Math.exp((x[i] - top) * invT);
      total += probs[i];
    }
  }
  if (params.topP < 1) {
    const sorted = Float64Array.from(probs).sort().reverse();
    let cum = 0;
    let cut = 0;
    for (let j = 0; j < V && sorted[j] > 0; j++) {
      cum += sorted[j];
      cut = sorted[j];
      if (cum >= params.topP * total) break;
    }
    total = 0;
    for (let i = 0; i < V; i++) {
      if (probs[i] < cut) probs[i] = 0;
      total += probs[i];
    }
  }
  let u = rng.next() * total;
  let last = 0;
  for (let i = 0; i < V; i++) {
    if (probs[i] === 0) continue;
    last = i;
    u -= probs[i];
    if (u < 0) return i;
  }
  return last;
}

export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** The k-th largest value of x (k >= 1). */
function kthLargest(x: Float32Array, k: number): number {
  const sorted = Float32Array.from(x).sort();
  return sorted[x.length - k];
}

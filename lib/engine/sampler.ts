// Next-token choice from one row of logits [vocab]:
//   1. repetition penalty (CTRL / transformers): for every token already in the sequence,
//      logit > 0 ? logit / p : logit * p
//   2. temperature 0 -> argmax (ties -> the lower id); else logits / T
//   3. top-k: keep the tokens whose logit is at least the k-th largest (0 = all)
//   4. softmax over what is kept;  5. top-p: keep the most likely tokens until their probability
//      reaches p (a threshold on probability, so ties at the threshold are all kept)
//   6. draw u in [0, 1) from the request's rng and walk the kept tokens in id order.
// Every step is O(vocab) in the usual cases: the k-th largest logit comes from a k-sized heap, and
// the top-p threshold from sorting only the tokens above a probability floor that is lowered
// until they hold the p mass (one or two passes for a peaked distribution). Sorting the whole
// vocabulary instead costs ~10-20 ms per row and step at 150k tokens, more than a decode step of
// a small model. Buffers are reused between calls (one thread uses this module at a time).
import { Rng } from './rng';

export interface SamplingParams {
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
}

export const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

let penalised = new Float32Array(0);
let probs = new Float64Array(0);
let kept = new Int32Array(0);
let sorted = new Float64Array(0);

export function sampleToken(logits: Float32Array, params: SamplingParams, seen: readonly number[], rng: Rng): number {
  const x = applyPenalty(logits, params.repetitionPenalty, seen);
  if (params.temperature === 0) return argmax(x);
  const { n, total } = keptTokens(x, params);
  return draw(n, total, rng.next());
}

export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** The logits with the repetition penalty applied (a reused copy), or the logits themselves. */
function applyPenalty(logits: Float32Array, p: number, seen: readonly number[]): Float32Array {
  if (p === 1 || seen.length === 0) return logits;
  if (penalised.length < logits.length) penalised = new Float32Array(logits.length);
  const x = penalised.subarray(0, logits.length);
  x.set(logits);
  for (const t of new Set(seen)) {
    if (t < x.length) x[t] = logits[t] > 0 ? logits[t] / p : logits[t] * p;
  }
  return x;
}

/**
 * Fills kept[0, n) with the ids that survive top-k and top-p (in id order) and probs[0, n) with
 * their unnormalised probabilities exp((x - max) / T); returns n and their sum (in id order).
 */
function keptTokens(x: Float32Array, params: SamplingParams): { n: number; total: number } {
  const V = x.length;
  if (probs.length < V) {
    probs = new Float64Array(V);
    kept = new Int32Array(V);
  }
  const top = x[argmax(x)];
  const floor = params.topK > 0 && params.topK < V ? kthLargest(x, params.topK) : -Infinity;
  const invT = 1 / params.temperature;
  let n = 0;
  let total = 0;
  for (let i = 0; i < V; i++) {
    if (x[i] >= floor) {
      const p = Math.exp((x[i] - top) * invT);
      kept[n] = i;
      probs[n++] = p;
      total += p;
    }
  }
  if (params.topP >= 1) return { n, total };
  const cut = topPThreshold(n, total, params.topP);
  let m = 0;
  let keptTotal = 0;
  for (let j = 0; j < n; j++) {
    if (probs[j] >= cut) {
      kept[m] = kept[j];
      probs[m++] = probs[j];
      keptTotal += probs[j];
    }
  }
  return { n: m, total: keptTotal };
}

/**
 * The smallest probability the top-p set keeps: walking probs[0, n) from the largest down, the
 * value at which the running sum first reaches p * total. Only values at or above a floor are
 * sorted; the floor starts at max / 64 and drops 64-fold until the values above it hold that mass.
 */
function topPThreshold(n: number, total: number, p: number): number {
  const want = p * total;
  let max = 0;
  for (let j = 0; j < n; j++) if (probs[j] > max) max = probs[j];
  for (let floor = max / 64; ; floor /= 64) {
    let mass = 0;
    let count = 0;
    for (let j = 0; j < n; j++) {
      if (probs[j] >= floor) {
        mass += probs[j];
        count++;
      }
    }
    const everything = floor === 0 || count === n;
    if (mass < want && !everything) continue;
    if (sorted.length < count) sorted = new Float64Array(count);
    const s = sorted.subarray(0, count);
    let c = 0;
    for (let j = 0; j < n; j++) if (probs[j] >= floor) s[c++] = probs[j];
    s.sort();
    let cum = 0;
    let cut = 0;
    for (let j = count - 1; j >= 0 && s[j] > 0; j--) {
      cum += s[j];
      cut = s[j];
      if (cum >= want) return cut;
    }
    // summed largest first the mass can round below what the id-order sum reached: go lower
    if (everything) return cut;
  }
}

/** Walks the kept tokens in id order until u * total is used up. */
function draw(n: number, total: number, u01: number): number {
  let u = u01 * total;
  let last = kept[0];
  for (let j = 0; j < n; j++) {
    if (probs[j] === 0) continue;
    last = kept[j];
    u -= probs[j];
    if (u < 0) return kept[j];
  }
  return last;
}

/** The k-th largest value of x (1 <= k < x.length): a min-heap of the k largest seen so far. */
function kthLargest(x: Float32Array, k: number): number {
  if (k > 4096) return Float32Array.from(x).sort()[x.length - k];
  const heap = new Float32Array(k);
  heap.set(x.subarray(0, k));
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(heap, i, k);
  for (let i = k; i < x.length; i++) {
    if (x[i] > heap[0]) {
      heap[0] = x[i];
      siftDown(heap, 0, k);
    }
  }
  return heap[0];
}

function siftDown(h: Float32Array, i: number, n: number): void {
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) return;
    const c = l + 1 < n && h[l + 1] < h[l] ? l + 1 : l;
    if (h[c] >= h[i]) return;
    const t = h[i];
    h[i] = h[c];
    h[c] = t;
    i = c;
  }
}

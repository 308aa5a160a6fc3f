// Next-token choice from one row of logits [vocab]:
//   1. repetition penalty (CTRL / transformers): for every token already in the sequence,
//      logit > 0 ? logit / p : logit * p
//   2. presence / frequency penalties (OpenAI): over the generated tokens only (seen from
//      generatedFrom on), logit[t] -= presence * (count[t] > 0) + frequency * count[t]
//   3. logit bias (OpenAI): logit[t] += bias[t]
//   -> log-probabilities, when asked for, are log-softmax of these adjusted logits: before
//      temperature, top-k and top-p, as OpenAI reports them (they do not change with temperature,
//      and greedy requests get them too)
//   4. temperature 0 -> argmax (ties -> the lower id); else logits / T
//   5. top-k: keep the tokens whose logit is at least the k-th largest (0 = all)
//   6. softmax over what is kept;  7. top-p: keep the most likely tokens until their probability
//      reaches p (a threshold on probability, so ties at the threshold are all kept)
//   8. draw u in [0, 1) from the request's rng and walk the kept tokens in id order.
// Every step is O(vocab) in the usual cases: the k-th largest logit comes from a k-sized heap, and
// the top-p threshold from sorting only the tokens above a probability floor that is lowered
// until they hold the p mass (one or two passes for a peaked distribution). Sorting the whole
// vocabulary instead costs ~10-20 ms per row and step at 150k tokens, more than a decode step of
// a small model. Buffers are reused between calls (one thread uses this module at a time).
// Presence / frequency count the generated tokens afresh each step (O(generated)): a Map per call
// is cheaper than keeping counts per row in the batcher, which would tie this pure function to it.
import { Rng } from '../rng';

export interface SamplingParams {
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  /** OpenAI presence_penalty, in [-2, 2]: subtracted once from the logit of every token generated
   *  so far (0 or absent: none) */
  presencePenalty?: number;
  /** OpenAI frequency_penalty, in [-2, 2]: subtracted from a token's logit once per time it was
   *  generated (0 or absent: none) */
  frequencyPenalty?: number;
  /** OpenAI logit_bias: token id -> bias in [-100, 100] added to that token's logit (a plain
   *  object, so it crosses to the worker thread as it is); ids past the vocabulary are ignored */
  logitBias?: Readonly<Record<number, number>>;
  /** report the chosen token's log-probability and this many most likely alternatives (0..20);
   *  absent: no log-probabilities are computed */
  topLogprobs?: number;
}

/** One token and its log-probability. */
export interface TokenLogprob {
  token: number;
  logprob: number;
}

/** The chosen token's log-probability and the most likely tokens, most likely first (ties: lower id first). */
export interface SampledLogprobs {
  logprob: number;
  top: TokenLogprob[];
}

export interface Sampled {
  token: number;
  /** set when params.topLogprobs is */
  logprobs?: SampledLogprobs;
}

export const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

let penalised = new Float32Array(0);
let probs = new Float64Array(0);
let kept = new Int32Array(0);
let sorted = new Float64Array(0);

/**
 * The next token for a row whose sequence so far is `seen` (prompt and generated tokens);
 * `generatedFrom` is where the generated tokens start in it (the prompt's length), the tokens
 * presence / frequency penalties count. With params.topLogprobs, also its log-probabilities.
 */
export function sample(logits: Float32Array, params: SamplingParams, seen: readonly number[], rng: Rng, generatedFrom = 0): Sampled {
  const x = adjusted(logits, params, seen, generatedFrom);
  const token = params.temperature === 0 ? argmax(x) : drawKept(x, params, rng);
  if (params.topLogprobs === undefined) return { token };
  return { token, logprobs: logprobsOf(x, token, params.topLogprobs) };
}

/** sample()'s token alone. */
export function sampleToken(logits: Float32Array, params: SamplingParams, seen: readonly number[], rng: Rng, generatedFrom = 0): number {
  return sample(logits, params, seen, rng, generatedFrom).token;
}

function drawKept(x: Float32Array, params: SamplingParams, rng: Rng): number {
  const { n, total } = keptTokens(x, params);
  return draw(n, total, rng.next());
}

export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** The logits with penalties and bias applied (a reused copy), or the logits themselves when
 *  none applies (the common case pays no copy). */
function adjusted(logits: Float32Array, params: SamplingParams, seen: readonly number[], generatedFrom: number): Float32Array {
  const p = params.repetitionPenalty;
  const presence = params.presencePenalty ?? 0;
  const frequency = params.frequencyPenalty ?? 0;
  const bias = params.logitBias;
  const repetition = p !== 1 && seen.length > 0;
  const counted = (presence !== 0 || frequency !== 0) && seen.length > generatedFrom;
  const biased = bias !== undefined && Object.keys(bias).length > 0;
  if (!repetition && !counted && !biased) return logits;
  if (penalised.length < logits.length) penalised = new Float32Array(logits.length);
  const V = logits.length;
  const x = penalised.subarray(0, V);
  x.set(logits);
  if (repetition) {
    for (const t of new Set(seen)) {
      if (t < V) x[t] = logits[t] > 0 ? logits[t] / p : logits[t] * p;
    }
  }
  if (counted) {
    const counts = new Map<number, number>();
    for (let i = Math.max(0, generatedFrom); i < seen.length; i++) counts.set(seen[i], (counts.get(seen[i]) ?? 0) + 1);
    for (const [t, c] of counts) if (t < V) x[t] -= presence + frequency * c;
  }
  if (biased) {
    for (const key of Object.keys(bias)) {
      const t = Number(key);
      if (Number.isInteger(t) && t >= 0 && t < V) x[t] += bias[t];
    }
  }
  return x;
}

/**
 * log-softmax of x at `token`, and the n largest entries (most likely first, ties: lower id
 * first), in float64: one pass for the maximum, one for the sum, one for the top n kept sorted
 * by insertion (n <= 20, so O(vocab) in practice).
 */
function logprobsOf(x: Float32Array, token: number, n: number): SampledLogprobs {
  const V = x.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(x[i] - max);
  const lse = max + Math.log(sum);
  const topIds: number[] = [];
  if (n > 0) {
    for (let i = 0; i < V; i++) {
      const v = x[i];
      if (topIds.length === n && !(v > x[topIds[n - 1]])) continue;
      // after every entry at least as large: an equal value already kept has the lower id
      let at = topIds.length;
      while (at > 0 && x[topIds[at - 1]] < v) at--;
      topIds.splice(at, 0, i);
      if (topIds.length > n) topIds.pop();
    }
  }
  return { logprob: x[token] - lse, top: topIds.map((t) => ({ token: t, logprob: x[t] - lse })) };
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

// The sampler against the plain definition (sort everything, float64), on fresh random logits:
// the same token for the same draw, whatever path the fast version takes (k-heap or full sort
// for top-k, one or several floors for top-p, peaked or flat distributions, ties, penalties);
// OpenAI's presence / frequency penalties, logit bias and log-probabilities against the same
// slow definition.
import { argmax, sample, sampleToken, SamplingParams } from '../lib/engine/sampler';
import { Rng } from '../lib/rng';

/** The definition, written the slow obvious way (what lib/engine/sampler.ts's comment says). */
function referenceAdjusted(logits: Float32Array, p: SamplingParams, seen: readonly number[], generatedFrom = 0): Float32Array {
  const x = Float32Array.from(logits);
  if (p.repetitionPenalty !== 1) {
    for (const t of new Set(seen)) x[t] = logits[t] > 0 ? logits[t] / p.repetitionPenalty : logits[t] * p.repetitionPenalty;
  }
  const generated = seen.slice(generatedFrom);
  for (const t of new Set(generated)) {
    const count = generated.filter((g) => g === t).length;
    x[t] -= (p.presencePenalty ?? 0) * (count > 0 ? 1 : 0) + (p.frequencyPenalty ?? 0) * count;
  }
  for (const [t, b] of Object.entries(p.logitBias ?? {})) x[Number(t)] += b;
  return x;
}

function referenceSample(logits: Float32Array, p: SamplingParams, seen: readonly number[], u01: number, generatedFrom = 0): number {
  const x = referenceAdjusted(logits, p, seen, generatedFrom);
  if (p.temperature === 0) return argmax(x);
  const V = x.length;
  const top = x.reduce((m, v) => (v > m ? v : m), -Infinity);
  const floor = p.topK > 0 && p.topK < V ? Float32Array.from(x).sort()[V - p.topK] : -Infinity;
  const probs = Array.from(x, (v) => (v >= floor ? Math.exp((v - top) / p.temperature) : 0));
  let total = probs.reduce((a, b) => a + b, 0);
  if (p.topP < 1) {
    const desc = [...probs].sort((a, b) => b - a);
    let cum = 0;
    let cut = 0;
    for (const q of desc) {
      if (q <= 0) break;
      cum += q;
      cut = q;
      if (cum >= p.topP * total) break;
    }
    probs.forEach((q, i) => (probs[i] = q < cut ? 0 : q));
    total = probs.reduce((a, b) => a + b, 0);
  }
  let u = u01 * total;
  let last = 0;
  for (let i = 0; i < V; i++) {
    if (probs[i] === 0) continue;
    last = i;
    u -= probs[i];
    if (u < 0) return i;
  }
  return last;
}

function logitsOf(V: number, rng: Rng, shape: 'flat' | 'peaked' | 'ties' | 'plateau'): Float32Array {
  const x = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    if (shape === 'flat') x[i] = rng.next() * 2 - 1;
    // one token on top of a broad plateau that holds most of the mass, and a far tail: top-p
    // needs the plateau but not the tail (the fast version's second probability floor)
    else if (shape === 'plateau') x[i] = i === 7 ? 2 : i % 60 === 0 ? -20 + rng.next() : -3 - rng.next() * 0.1;
    else if (shape === 'peaked') x[i] = rng.next() * 8 - 20 + (rng.next() < 0.002 ? 18 + rng.next() * 6 : 0);
    else x[i] = Math.round(rng.next() * 6) / 2; // few distinct values: ties everywhere
  }
  return x;
}

/** The u the sampler's Rng(seed) draws first (sampleToken draws exactly one). */
const firstDraw = (seed: number) => new Rng(seed).next();

describe('sampleToken', () => {
  const PARAMS: SamplingParams[] = [
    { temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 },
    { temperature: 0.7, topK: 0, topP: 0.9, repetitionPenalty: 1 },
    { temperature: 0.7, topK: 50, topP: 1, repetitionPenalty: 1 },
    { temperature: 1.3, topK: 40, topP: 0.8, repetitionPenalty: 1.2 },
    { temperature: 0.5, topK: 5000, topP: 0.95, repetitionPenalty: 1 }, // k above the heap's limit: full sort
    { temperature: 2, topK: 0, topP: 0.05, repetitionPenalty: 1.5 },
  ];

  test.each(['flat', 'peaked', 'ties', 'plateau'] as const)('draws the token the definition draws (%s logits, vocab 6000)', (shape) => {
    const gen = new Rng(Date.now() % 100000);
    for (let trial = 0; trial < 12; trial++) {
      const x = logitsOf(6000, gen, shape);
      const seen = Array.from({ length: 30 }, () => Math.floor(gen.next() * 6000));
      for (const p of PARAMS) {
        const seed = Math.floor(gen.next() * 1e9);
        expect(sampleToken(x, p, seen, new Rng(seed))).toBe(referenceSample(x, p, seen, firstDraw(seed)));
      }
    }
  });

  test('a 150k vocabulary gives the same tokens as the definition', () => {
    const gen = new Rng(4242);
    const x = logitsOf(151936, gen, 'peaked');
    for (const p of PARAMS.slice(0, 4)) {
      const seed = Math.floor(gen.next() * 1e9);
      expect(sampleToken(x, p, [1, 2, 3], new Rng(seed))).toBe(referenceSample(x, p, [1, 2, 3], firstDraw(seed)));
    }
  });

  test('temperature 0 is argmax with ties going to the lower id; topK 1 keeps only the top logit (and its ties)', () => {
    const x = Float32Array.from([0.5, 2, -1, 2, 1]);
    expect(sampleToken(x, { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 }, [], new Rng(1))).toBe(1);
    const drawn = new Set<number>();
    for (let seed = 0; seed < 200; seed++) drawn.add(sampleToken(x, { temperature: 3, topK: 1, topP: 1, repetitionPenalty: 1 }, [], new Rng(seed)));
    expect([...drawn].sort()).toEqual([1, 3]);
    const single = Float32Array.from([0.5, 2, -1, 1.9, 1]);
    for (let seed = 0; seed < 50; seed++) expect(sampleToken(single, { temperature: 3, topK: 1, topP: 1, repetitionPenalty: 1 }, [], new Rng(seed))).toBe(1);
  });

  test('only top-k / top-p survivors are ever drawn, and every survivor can be', () => {
    // logits 0..9: with topK 3 only 7, 8, 9; with topP the most likely until the mass is reached
    const x = Float32Array.from({ length: 10 }, (_, i) => i);
    const drawn = (p: SamplingParams) => {
      const s = new Set<number>();
      for (let seed = 0; seed < 3000; seed++) s.add(sampleToken(x, p, [], new Rng(seed)));
      return [...s].sort((a, b) => a - b);
    };
    expect(drawn({ temperature: 1, topK: 3, topP: 1, repetitionPenalty: 1 })).toEqual([7, 8, 9]);
    // probabilities ∝ e^i: 9 holds 63%, 9+8 86%, 9+8+7 95%
    expect(drawn({ temperature: 1, topK: 0, topP: 0.6, repetitionPenalty: 1 })).toEqual([9]);
    expect(drawn({ temperature: 1, topK: 0, topP: 0.9, repetitionPenalty: 1 })).toEqual([7, 8, 9]);
  });

  test('the draw follows the probabilities (chi-square over 20 000 draws)', () => {
    const x = Float32Array.from([1, 2, 0.5, 3, -1]);
    const T = 1.5;
    const w = Array.from(x, (v) => Math.exp(v / T));
    const sum = w.reduce((a, b) => a + b, 0);
    const counts = new Array(5).fill(0);
    const rng = new Rng(99);
    const N = 20000;
    for (let i = 0; i < N; i++) counts[sampleToken(x, { temperature: T, topK: 0, topP: 1, repetitionPenalty: 1 }, [], rng)]++;
    const chi2 = counts.reduce((acc, c, i) => acc + (c - (N * w[i]) / sum) ** 2 / ((N * w[i]) / sum), 0);
    expect(chi2).toBeLessThan(18.5); // 4 degrees of freedom, p = 0.001
  });
});

describe('OpenAI penalties, logit bias and log-probabilities', () => {
  const BASE: SamplingParams = { temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 };

  test('presence / frequency penalties and logit bias draw the token the definition draws (sampled and greedy)', () => {
    const gen = new Rng(Date.now() % 100000);
    const params: SamplingParams[] = [
      { ...BASE, presencePenalty: 1.5 },
      { ...BASE, frequencyPenalty: 0.8, temperature: 0.7, topP: 0.9 },
      { ...BASE, presencePenalty: -2, frequencyPenalty: 2, topK: 40, repetitionPenalty: 1.3 },
      { ...BASE, logitBias: { 3: 100, 17: -100, 250: 4.5 } },
      { ...BASE, temperature: 0, presencePenalty: 2, frequencyPenalty: 1, logitBias: { 8: 2 } },
    ];
    for (let trial = 0; trial < 20; trial++) {
      const x = logitsOf(3000, gen, trial % 2 ? 'peaked' : 'ties');
      const seen = Array.from({ length: 40 }, () => Math.floor(gen.next() * 60)); // repeats, so counts > 1
      const generatedFrom = Math.floor(gen.next() * 40);
      for (const p of params) {
        const seed = Math.floor(gen.next() * 1e9);
        expect(sampleToken(x, p, seen, new Rng(seed), generatedFrom)).toBe(referenceSample(x, p, seen, firstDraw(seed), generatedFrom));
      }
    }
  });

  test('presence and frequency penalties count the generated tokens only, not the prompt', () => {
    const x = Float32Array.from([0, 1, 5, 4.9, 0]);
    const p = { ...BASE, temperature: 0, presencePenalty: 2, frequencyPenalty: 1 };
    // token 2 fills the prompt (the first 3 tokens): untouched, it stays the argmax
    expect(sampleToken(x, p, [2, 2, 2], new Rng(1), 3)).toBe(2);
    // generated once: 5 - 2 - 1 = 2 < 4.9
    expect(sampleToken(x, p, [2, 2, 2, 2], new Rng(1), 3)).toBe(3);
    // a negative penalty favours what was generated
    expect(sampleToken(x, { ...p, presencePenalty: -2, frequencyPenalty: 0 }, [0, 1, 3], new Rng(1), 1)).toBe(3);
  });

  test('a bias of -100 keeps a token from ever being drawn; +100 makes it the choice', () => {
    const x = Float32Array.from([2, 2, 2, 2]);
    const drawn = new Set<number>();
    for (let seed = 0; seed < 400; seed++) drawn.add(sampleToken(x, { ...BASE, logitBias: { 1: -100 } }, [], new Rng(seed)));
    expect([...drawn].sort()).toEqual([0, 2, 3]);
    for (let seed = 0; seed < 50; seed++) expect(sampleToken(x, { ...BASE, logitBias: { 2: 100 } }, [], new Rng(seed))).toBe(2);
    // ids past the vocabulary are ignored rather than written past the row
    expect(sampleToken(x, { ...BASE, temperature: 0, logitBias: { 9: 100 } }, [], new Rng(1))).toBe(0);
  });

  test('log-probabilities are the log-softmax of the adjusted logits, most likely first, ties to the lower id', () => {
    const gen = new Rng(77);
    const x = logitsOf(2048, gen, 'ties');
    const p: SamplingParams = { ...BASE, temperature: 0.8, frequencyPenalty: 0.5, logitBias: { 5: 3 }, topLogprobs: 20 };
    const seen = [5, 9, 9, 30];
    const got = sample(x, p, seen, new Rng(3), 1);
    const adj = referenceAdjusted(x, p, seen, 1);
    const max = adj.reduce((m, v) => Math.max(m, v), -Infinity);
    const lse = max + Math.log(adj.reduce((s, v) => s + Math.exp(v - max), 0));
    const want = Array.from(adj, (v, token) => ({ token, logprob: v - lse })).sort((a, b) => b.logprob - a.logprob || a.token - b.token).slice(0, 20);
    expect(got.logprobs!.top.map((e) => e.token)).toEqual(want.map((e) => e.token));
    got.logprobs!.top.forEach((e, i) => expect(e.logprob).toBeCloseTo(want[i].logprob, 10));
    expect(got.logprobs!.logprob).toBeCloseTo(adj[got.token] - lse, 10);
    expect(got.token).toBe(sampleToken(x, { ...p, topLogprobs: undefined }, seen, new Rng(3), 1));
  });

  test('log-probabilities do not depend on temperature; topLogprobs 0 gives the chosen token\'s alone; absent, none', () => {
    const x = Float32Array.from([1, 3, 2, 0.5]);
    const cold = sample(x, { ...BASE, temperature: 0, topLogprobs: 2 }, [], new Rng(1));
    const hot = sample(x, { ...BASE, temperature: 1.7, topK: 2, topLogprobs: 2 }, [], new Rng(1));
    expect(cold.token).toBe(1);
    expect(hot.logprobs!.top).toEqual(cold.logprobs!.top);
    expect(cold.logprobs!.top.map((e) => e.token)).toEqual([1, 2]);
    const total = [1, 3, 2, 0.5].reduce((s, v) => s + Math.exp(v), 0);
    expect(cold.logprobs!.logprob).toBeCloseTo(3 - Math.log(total), 6);
    expect(sample(x, { ...BASE, topLogprobs: 0 }, [], new Rng(1)).logprobs!.top).toEqual([]);
    expect(sample(x, BASE, [], new Rng(1)).logprobs).toBeUndefined();
  });
});

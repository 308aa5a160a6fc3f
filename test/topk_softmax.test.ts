// topkSoftmax / topkSoftmaxAsync against the float64 reference.
//
// ids must equal the reference's exactly (selection compares the f32 logits themselves, larger
// first, ties to the lower id). Weights: per weight, relative to its reference value,
//   |got − ref| ≤ (E + k + 2·spread + 16) · u · ref,   u = 2⁻²⁴, spread = max logit − min finite logit
// E: the f32 sum of E exponentials; k: the renormalising sum; 2·spread: the rounding of
// (l − m) seen through exp (an absolute error u·|l − m| in the exponent); 16: expf's own
// error (≤ 2 ulp), the divisions and γ_n's slack. All terms are positive, so relative bounds hold.
//
// Then its argument validation (test/helpers/validation.ts): each bad argument a TypeError or
// RangeError naming it, sync and async alike, through the TS API and the raw native binding.
// The op on the CUDA device: test/device_topk_softmax.test.ts.
import { kernels, reference } from '../lib';
import { expectOffThread } from './helpers/async';
import { describeEachSimd } from './helpers/bank';
import {
  expectAsyncFails, expectBitsEqual, expectClose, expectIntsEqual, expectRejectsOnly, expectThrows, typedArrayTag, U32,
} from './helpers/check';
import { Rng, testRng } from './helpers/rng';
import { setThreadsSettled } from './helpers/threads';
import { bothFail, nb } from './helpers/validation';

const SPREAD = 8; // random logits are uniform in [-4, 4)

function weightBound(ref: Float64Array, E: number, k: number, spread = SPREAD): Float64Array {
  return ref.map((v) => 1.01 * (E + k + 2 * spread + 16) * U32 * v + 1e-35);
}

function checkAgainstReference(logits: Float32Array, E: number, k: number, renormalize: boolean, what: string, spread = SPREAD) {
  const got = kernels.topkSoftmax(logits, E, k, { renormalize });
  const ref = reference.refTopkSoftmax(logits, E, k, renormalize);
  expectIntsEqual(got.ids, ref.ids, `${what}: ids`);
  expectClose(got.weights, ref.weights, weightBound(ref.weights, E, k, spread), `${what}: weights`);
  return got;
}

/** Logits drawn from a few levels, so that rows are full of exact ties. */
function tiedLogits(rng: Rng, n: number): Float32Array {
  const levels = [-1.5, -0.25, 0.5, 2];
  return Float32Array.from({ length: n }, () => levels[rng.int(0, levels.length)]);
}

interface Case {
  name: string;
  T: number;
  E: number;
  k: number;
}

const CASES: Case[] = [
  { name: 'E=1 k=1 T=5', T: 5, E: 1, k: 1 },
  { name: 'E=7 k=3 T=1', T: 1, E: 7, k: 3 },
  { name: 'E=10 k=2 T=9', T: 9, E: 10, k: 2 },
  { name: 'E=33 k=E T=4', T: 4, E: 33, k: 33 },
  { name: 'E=64 k=32 T=6 (insertion, its largest k)', T: 6, E: 64, k: 32 },
  { name: 'E=64 k=33 T=6 (partial sort, its smallest k)', T: 6, E: 64, k: 33 },
  { name: 'E=1024 k=1 T=3', T: 3, E: 1024, k: 1 },
  { name: 'E=1024 k=100 T=3 (partial sort)', T: 3, E: 1024, k: 100 },
  { name: 'E=1024 k=1024 T=2', T: 2, E: 1024, k: 1024 },
  { name: 'E=16 k=4 T=300 (several row blocks, parallel)', T: 300, E: 16, k: 4 },
  { name: 'E=12 k=3 T=0', T: 0, E: 12, k: 3 },
];

describe('topkSoftmax', () => {
  describeEachSimd(() => {
    it.each(CASES)('picks the k largest logits and returns their softmax probabilities, sync and async: $name', async (c) => {
      const rng = testRng();
      const logits = rng.f32(c.T * c.E, -4, 4);
      for (const renormalize of [false, true]) {
        const got = checkAgainstReference(logits, c.E, c.k, renormalize, `${c.name} renormalize=${renormalize}`);
        expect(got.ids.length).toBe(c.T * c.k);
        const gotA = await kernels.topkSoftmaxAsync(logits, c.E, c.k, { renormalize });
        expectIntsEqual(gotA.ids, got.ids, 'async ids');
        expectBitsEqual(gotA.weights, got.weights, 'async weights');
      }
    });

    it.each([
      { name: 'E=16 k=5 (insertion)', E: 16, k: 5 },
      { name: 'E=16 k=16 (insertion, k=E)', E: 16, k: 16 },
      { name: 'E=200 k=60 (partial sort)', E: 200, k: 60 },
      { name: 'E=1024 k=1024 (partial sort, k=E)', E: 1024, k: 1024 },
    ])('ties go to the lower expert id, and tied logits get bit-identical weights: $name', ({ E, k }) => {
      const rng = testRng();
      const T = 5;
      const logits = tiedLogits(rng, T * E);
      const got = checkAgainstReference(logits, E, k, false, `ties E=${E} k=${k}`, 3.5);
      for (let t = 0; t < T; t++) {
        for (let j = 1; j < k; j++) {
          const a = got.ids[t * k + j - 1], b = got.ids[t * k + j];
          const la = logits[t * E + a], lb = logits[t * E + b];
          expect(la >= lb).toBe(true);
          if (la === lb) {
            expect(a).toBeLessThan(b);
            expect(got.weights[t * k + j]).toBe(got.weights[t * k + j - 1]);
          }
        }
      }
    });
  });

  it('a row of equal logits picks ids 0..k-1 with weight 1/E each', () => {
    const E = 40, k = 35;
    const got = kernels.topkSoftmax(new Float32Array(E).fill(0.75), E, k);
    expect(Array.from(got.ids)).toEqual(Array.from({ length: k }, (_, i) => i));
    for (const w of got.weights) expect(Math.abs(w - 1 / E)).toBeLessThanOrEqual(2 * E * U32 / E);
  });

  it('renormalize makes the k weights of every row sum to 1', () => {
    const rng = testRng();
    for (const [E, k] of [[9, 4], [300, 50], [1024, 1024]]) {
      const T = 7;
      const got = kernels.topkSoftmax(rng.f32(T * E, -4, 4), E, k, { renormalize: true });
      for (let t = 0; t < T; t++) {
        let s = 0;
        for (let j = 0; j < k; j++) s += got.weights[t * k + j];
        expect(Math.abs(s - 1)).toBeLessThanOrEqual((2 * k + 4) * U32);
      }
    }
  });

  it('without renormalize the k weights sum to the kept share of the probability (< 1 when k < E)', () => {
    const rng = testRng();
    const E = 12, k = 3;
    const got = kernels.topkSoftmax(rng.f32(E, -4, 4), E, k);
    const s = got.weights.reduce((a, b) => a + b, 0);
    expect(s).toBeLessThan(1);
    expect(s).toBeGreaterThan(k / E - 1e-6);
  });

  it('-Infinity logits are allowed: they rank last (by id) with weight exactly 0', () => {
    const rng = testRng();
    const E = 10;
    const logits = rng.f32(2 * E, -4, 4);
    const neg = [1, 4, 5, 13, 19];
    for (const i of neg) logits[i] = -Infinity;
    for (const k of [3, E]) {
      const got = checkAgainstReference(logits, E, k, true, `-Infinity k=${k}`);
      if (k === E) {
        expect(Array.from(got.ids.subarray(E - 3, E))).toEqual([1, 4, 5]);
        expect(Array.from(got.weights.subarray(E - 3, E))).toEqual([0, 0, 0]);
        expect(Array.from(got.ids.subarray(2 * E - 2))).toEqual([3, 9]);
        expect(Array.from(got.weights.subarray(2 * E - 2))).toEqual([0, 0]);
      }
    }
    // a row with a single finite logit puts all the probability on it
    const one = new Float32Array(6).fill(-Infinity);
    one[4] = -2.5;
    const got = kernels.topkSoftmax(one, 6, 2);
    expect(Array.from(got.ids)).toEqual([4, 0]);
    expect(Array.from(got.weights)).toEqual([1, 0]);
  });

  it('extreme finite logits (±3e38) neither overflow nor give NaN', () => {
    const logits = Float32Array.from([3e38, -3e38, 3e38, 1, -1, 0]);
    const got = kernels.topkSoftmax(logits, 6, 6, { renormalize: true });
    expect(Array.from(got.ids)).toEqual([0, 2, 3, 5, 4, 1]);
    expect(Array.from(got.weights)).toEqual([0.5, 0.5, 0, 0, 0, 0]);
  });

  it.each([
    { name: 'NaN', bad: NaN },
    { name: '+Infinity', bad: Infinity },
  ])('a $name logit is a RangeError naming logits and the first bad row, sync and async', async ({ bad }) => {
    const rng = testRng();
    const E = 8, T = 300;
    const logits = rng.f32(T * E, -4, 4);
    logits[200 * E + 3] = bad;
    logits[70 * E + 5] = bad;
    logits[150 * E] = bad;
    expectThrows(() => kernels.topkSoftmax(logits, E, 2), RangeError, /logits/, /row 70\b/);
    await expectAsyncFails(() => kernels.topkSoftmaxAsync(logits, E, 2), RangeError, /logits/, /row 70\b/);
    const single = rng.f32(4 * E);
    single[3 * E + 7] = bad;
    expectThrows(() => kernels.topkSoftmax(single, E, 8, { renormalize: true }), RangeError, /logits/, /row 3\b/);
  });

  it('a row with no finite logit (all -Infinity) is a RangeError naming logits and the row', async () => {
    const rng = testRng();
    const logits = rng.f32(3 * 5);
    logits.fill(-Infinity, 5, 10);
    expectThrows(() => kernels.topkSoftmax(logits, 5, 1), RangeError, /logits/, /row 1\b/);
    await expectAsyncFails(() => kernels.topkSoftmaxAsync(logits, 5, 1), RangeError, /logits/, /row 1\b/);
  });

  it('reads logits given as a subarray view at a byte offset', async () => {
    const rng = testRng();
    const E = 11, k = 4, T = 5;
    const big = rng.f32(T * E + 9, -4, 4);
    const view = big.subarray(5, 5 + T * E);
    const got = checkAgainstReference(view, E, k, false, 'view');
    const copy = checkAgainstReference(view.slice(), E, k, false, 'copy');
    expectIntsEqual(got.ids, copy.ids, 'view vs copy');
    const gotA = await kernels.topkSoftmaxAsync(view, E, k);
    expectBitsEqual(gotA.weights, got.weights, 'async view');
  });

  it('returns fresh Int32Array ids and Float32Array weights, empty for T = 0', () => {
    const got = kernels.topkSoftmax(new Float32Array(0), 5, 2);
    expect(typedArrayTag(got.ids)).toBe('Int32Array');
    expect(typedArrayTag(got.weights)).toBe('Float32Array');
    expect(got.ids.length).toBe(0);
    expect(got.weights.length).toBe(0);
  });

  it('topkSoftmaxAsync runs off the main thread', async () => {
    const rng = testRng();
    const E = 1024, k = 64, T = 6000;
    const logits = rng.f32(T * E, -4, 4);
    kernels.setThreads(1);
    try {
      await expectOffThread(
        () => kernels.topkSoftmax(logits, E, k),
        () => kernels.topkSoftmaxAsync(logits, E, k),
      );
    } finally {
      await setThreadsSettled(0);
    }
  });
});

// ---- argument validation (test/helpers/validation.ts) ----

describe('topkSoftmax validation', () => {
  const rng = () => testRng();
  const logits = () => rng().f32(3 * 4);

  it('logits that are not a Float32Array (Float64Array, Array, undefined) are a TypeError naming logits', async () => {
    for (const bad of [new Float64Array(12), Array.from(logits()), undefined]) {
      await bothFail(() => kernels.topkSoftmax(bad as never, 4, 2), () => kernels.topkSoftmaxAsync(bad as never, 4, 2), TypeError, /logits/);
    }
  });

  it('a logits length that is not a multiple of experts is a RangeError naming logits', async () => {
    const l = rng().f32(13);
    await bothFail(() => kernels.topkSoftmax(l, 4, 2), () => kernels.topkSoftmaxAsync(l, 4, 2), RangeError, /logits/, /multiple of experts/);
  });

  it('k > experts, k < 1 and a non-integer k are RangeErrors naming k', async () => {
    const l = logits();
    for (const bad of [5, 0, -1, 1.5, NaN, Infinity]) {
      await bothFail(() => kernels.topkSoftmax(l, 4, bad), () => kernels.topkSoftmaxAsync(l, 4, bad), RangeError, /\bk\b/);
    }
  });

  it('experts outside [1, 1024] is a RangeError naming experts', async () => {
    for (const [E2, l] of [[0, new Float32Array(0)], [1025, rng().f32(1025)], [-4, logits()], [2.5, logits()]] as const) {
      await bothFail(() => kernels.topkSoftmax(l, E2, 1), () => kernels.topkSoftmaxAsync(l, E2, 1), RangeError, /experts/);
    }
  });

  it('a string or a boolean for experts or k is a TypeError naming it', async () => {
    const l = logits();
    await bothFail(() => kernels.topkSoftmax(l, '4' as never, 2), () => kernels.topkSoftmaxAsync(l, '4' as never, 2), TypeError, /experts/);
    await bothFail(() => kernels.topkSoftmax(l, 4, true as never), () => kernels.topkSoftmaxAsync(l, 4, true as never), TypeError, /\bk\b/);
  });
});

describe('native binding validation (the C++ layer on its own)', () => {
  it('topkSoftmax: wrong array type, lengths off by one, negative, non-integer and string numbers', async () => {
    const l = testRng().f32(4);
    await bothFail(() => nb().topkSoftmax(new Float64Array(4) as never, 2, 1, false), () => nb().topkSoftmaxAsync(new Float64Array(4) as never, 2, 1, false), TypeError, /logits/);
    expectThrows(() => nb().topkSoftmax(testRng().f32(5), 2, 1, false), RangeError, /logits/);
    expectThrows(() => nb().topkSoftmax(l, -2, 1, false), RangeError, /experts/);
    expectThrows(() => nb().topkSoftmax(l, 2, -1, false), RangeError, /\bk\b/);
    expectThrows(() => nb().topkSoftmax(l, 2.5, 1, false), RangeError, /experts/);
    expectThrows(() => nb().topkSoftmax(l, 2, 3, false), RangeError, /\bk\b/);
    expectThrows(() => nb().topkSoftmax(l, '2' as never, 1, false), TypeError, /experts/);
    expectThrows(() => nb().topkSoftmax(l, 2, '1' as never, false), TypeError, /\bk\b/);
    expectThrows(() => nb().topkSoftmax(l, 2 ** 40, 1, false), RangeError, /experts/);
  });
});

describe('async variants report errors by rejecting their Promise', () => {
  // The argument checks made while the call is made reject too (binding.test.ts has the data errors).
  it('topkSoftmaxAsync rejects (does not throw) for logits of the wrong type', async () => {
    await expectRejectsOnly(() => kernels.topkSoftmaxAsync(new Float64Array(4) as never, 2, 1), TypeError, /logits/);
  });
});

// mergeExperts / mergeExpertsAsync against the float64 reference, both layouts, new array and
// in place.
//
// Tolerance (all bank dtypes alike: the reference decodes the same bits exactly): each element
//   W'[i,o] = W[i,o] + Σ_j w_j s_j Σ_q A[q,i] B[o,q]
// passes each product through at most r (the rank sum) + n (one add per merged expert) + 8
// (w·s, the gate product, partial-sum merges) f32 roundings, so
//   |got − ref| ≤ (r + n + 8) · u · M,   u = 2⁻²⁴,   M = |W| + Σ_j |w_j s_j| Σ_q |A[q,i] B[o,q]|.
//
// Then its argument validation (test/helpers/validation.ts): each bad argument a TypeError or
// RangeError naming it, sync and async alike, through the TS API and the raw native binding.
// The op on the CUDA device: test/device_merge_experts.test.ts.
import { kernels, reference } from '../lib';
import { expectWritesWhileMainThreadSpins } from './helpers/async';
import {
  absArray, BANK_KINDS, describeEachSimd, Dtype, randomBank, randomWeights, TestBank,
} from './helpers/bank';
import {
  boundFrom, expectBitsEqual, expectClose, expectRejectsOnly, typedArrayTag, U32,
} from './helpers/check';
import { testRng } from './helpers/rng';
import { setThreadsSettled } from './helpers/threads';
import { bothFail, din, dout, ErrorClass, fixture, nativeFixture, nb } from './helpers/validation';

/** Relative rounding unit of the f32 accumulation, per bank dtype (equal: decoding is exact). */
const ACCUM_UNITS: Record<Dtype, number> = { f32: U32, f16: U32, bf16: U32 };

type Layout = 'in_out' | 'out_in';
const LAYOUTS: Layout[] = ['in_out', 'out_in'];

interface Case {
  name: string;
  E: number;
  r: number;
  din: number;
  dout: number;
  ids: number[];
  ranks?: number[];
}

const CASES: Case[] = [
  { name: 'din=1 dout=1 E=1 r=1 one expert', E: 1, r: 1, din: 1, dout: 1, ids: [0] },
  { name: 'din=7 dout=17 E=3 r=4 ids [2,-1,0]', E: 3, r: 4, din: 7, dout: 17, ids: [2, -1, 0] },
  { name: 'din=33 dout=5 E=4 r=64 ids [3,1]', E: 4, r: 64, din: 33, dout: 5, ids: [3, 1] },
  { name: 'din=1031 dout=9 E=3 r=8 all experts (many row tasks in_out)', E: 3, r: 8, din: 1031, dout: 9, ids: [0, 1, 2] },
  { name: 'din=17 dout=1029 E=2 r=5 (many row tasks out_in)', E: 2, r: 5, din: 17, dout: 1029, ids: [1, 0] },
  { name: 'mixed ranks [5,0,2] din=23 dout=19, a repeated id', E: 3, r: 5, din: 23, dout: 19, ids: [0, 1, 2, 0], ranks: [5, 0, 2] },
  { name: 'no experts (n = 0) din=6 dout=10', E: 2, r: 3, din: 6, dout: 10, ids: [] },
  { name: 'only -1 ids din=9 dout=4', E: 2, r: 3, din: 9, dout: 4, ids: [-1, -1] },
];

function check(tb: TestBank, ids: Int32Array, w: Float32Array, W: Float32Array, got: Float32Array, layout: Layout, dtype: Dtype, what: string) {
  const ref = reference.refMergeExperts(tb.ref, ids, w, W, layout);
  const mag = reference.refMergeExperts(tb.abs, ids, absArray(w), absArray(W), layout);
  expectClose(got, ref, boundFrom(mag, tb.spec.r + ids.length + 8, ACCUM_UNITS[dtype]), what);
}

describe('mergeExperts', () => {
  describeEachSimd(() => {
    for (const kind of BANK_KINDS) {
      describe(kind.label, () => {
        it.each(CASES)('adds Σ w·s·(B·A) to W in both layouts, new or in place, sync and async: $name', async (c) => {
          const rng = testRng();
          const tb = randomBank(rng, { E: c.E, r: c.r, din: c.din, dout: c.dout, dtype: kind.dtype, input: kind.input, ranks: c.ranks });
          const ids = Int32Array.from(c.ids);
          const w = randomWeights(rng, ids.length);
          const nothing = c.ids.every((e) => e < 0 || (c.ranks !== undefined && c.ranks[e] === 0));
          for (const layout of LAYOUTS) {
            const what = `mergeExperts ${layout} ${c.name} ${kind.label}`;
            const W = rng.f32(c.din * c.dout, -3, 3);
            const W0 = W.slice();
            // new array: W untouched
            const merged = kernels.mergeExperts(tb.bank, ids, w, W, { layout });
            expect(merged).not.toBe(W);
            expectBitsEqual(W, W0, `${what}: the input W`);
            check(tb, ids, w, W0, merged, layout, kind.dtype, what);
            if (nothing) expectBitsEqual(merged, W0, `${what}: nothing to merge`);
            // in place
            const ret = kernels.mergeExperts(tb.bank, ids, w, W, { layout, inPlace: true });
            expect(ret).toBe(W);
            expectBitsEqual(W, merged, `${what}: in place vs new array`);
            // async, both modes
            const mergedA = await kernels.mergeExpertsAsync(tb.bank, ids, w, W0, { layout });
            expectBitsEqual(mergedA, merged, `${what}: async vs sync`);
            const W2 = W0.slice();
            const retA = await kernels.mergeExpertsAsync(tb.bank, ids, w, W2, { layout, inPlace: true });
            expect(retA).toBe(W2);
            expectBitsEqual(W2, merged, `${what}: async in place vs sync`);
          }
          tb.bank.dispose();
        });
      });
    }
  });

  it('the default layout is in_out ([din, dout]) and out_in is its transpose', () => {
    const rng = testRng();
    const din = 6, dout = 4;
    const tb = randomBank(rng, { E: 2, r: 3, din, dout });
    const ids = Int32Array.from([0, 1]), w = randomWeights(rng, 2);
    const W = rng.f32(din * dout);
    const def = kernels.mergeExperts(tb.bank, ids, w, W);
    expectBitsEqual(def, kernels.mergeExperts(tb.bank, ids, w, W, { layout: 'in_out' }), 'default vs in_out');
    const Wt = new Float32Array(din * dout);
    for (let i = 0; i < din; i++) for (let o = 0; o < dout; o++) Wt[o * din + i] = W[i * dout + o];
    const outIn = kernels.mergeExperts(tb.bank, ids, w, Wt, { layout: 'out_in' });
    const back = new Float32Array(din * dout);
    for (let i = 0; i < din; i++) for (let o = 0; o < dout; o++) back[i * dout + o] = outIn[o * din + i];
    const mag = reference.refMergeExperts(tb.abs, ids, absArray(w), absArray(W));
    expectClose(back, def, boundFrom(mag, 2 * (3 + 2 + 8)), 'out_in transposed vs in_out');
  });

  it('x · merged W equals x · W + loraMoe(x) for the same mix (in_out and out_in)', () => {
    const rng = testRng();
    const E = 4, r = 6, din = 37, dout = 29, T = 3;
    const tb = randomBank(rng, { E, r, din, dout, ranks: [6, 2, 0, 4] });
    const ids = Int32Array.from([3, -1, 0, 1]), w = randomWeights(rng, 4);
    const x = rng.f32(T * din);
    const y = kernels.loraMoe(tb.bank, x, Int32Array.from({ length: T * 4 }, (_, i) => ids[i % 4]), Float32Array.from({ length: T * 4 }, (_, i) => w[i % 4]));
    for (const layout of LAYOUTS) {
      const W = rng.f32(din * dout);
      const merged = kernels.mergeExperts(tb.bank, ids, w, W, { layout });
      const at = (m: Float32Array, i: number, o: number) => (layout === 'in_out' ? m[i * dout + o] : m[o * din + i]);
      const lhs = new Float64Array(T * dout), rhs = new Float64Array(T * dout), mag = new Float64Array(T * dout);
      const delta = reference.refLoraMoe(tb.abs, absArray(x), Int32Array.from({ length: T * 4 }, (_, i) => ids[i % 4]), Float32Array.from({ length: T * 4 }, (_, i) => Math.abs(w[i % 4])));
      for (let t = 0; t < T; t++) {
        for (let o = 0; o < dout; o++) {
          let a = 0, b = 0, m = 0;
          for (let i = 0; i < din; i++) {
            a += x[t * din + i] * at(merged, i, o);
            b += x[t * din + i] * at(W, i, o);
            m += Math.abs(x[t * din + i] * at(W, i, o));
          }
          lhs[t * dout + o] = a;
          rhs[t * dout + o] = b + y[t * dout + o];
          mag[t * dout + o] = m + delta[t * dout + o];
        }
      }
      // merge's rounding of each W' element (r + n + 8 units) seen through x, plus loraMoe's bound
      expectClose(lhs, rhs, boundFrom(mag, (r + 4 + 8) + (din + r + 4 + 8)), `x·W' vs x·W + loraMoe (${layout})`);
    }
  });

  it('reads ids / weights / W given as subarray views at a byte offset, in place writes only the view', async () => {
    const rng = testRng();
    const din = 9, dout = 7;
    const tb = randomBank(rng, { E: 3, r: 4, din, dout });
    const idsBig = Int32Array.from([5, 5, 2, 0, 5]), wBig = rng.f32(6);
    const ids = idsBig.subarray(2, 4), w = wBig.subarray(3, 5);
    const WBig = rng.f32(din * dout + 10);
    const before = WBig.slice();
    const W = WBig.subarray(6, 6 + din * dout);
    const W0 = W.slice();
    const merged = kernels.mergeExperts(tb.bank, ids, w, W);
    check(tb, ids, w, W0, merged, 'in_out', 'f32', 'views');
    await kernels.mergeExpertsAsync(tb.bank, ids, w, W, { inPlace: true });
    expectBitsEqual(W, merged, 'async in place on a view');
    expectBitsEqual(WBig.subarray(0, 6), before.subarray(0, 6), 'before the W view');
    expectBitsEqual(WBig.subarray(6 + din * dout), before.subarray(6 + din * dout), 'after the W view');
    expect(typedArrayTag(merged)).toBe('Float32Array');
  });

  it('mergeExpertsAsync runs off the main thread (W fills in place while the main thread spins)', async () => {
    const rng = testRng();
    const E = 4, r = 64, din = 2048, dout = 2048;
    const tb = randomBank(rng, { E, r, din, dout });
    const ids = Int32Array.from([0, 1, 2]), w = randomWeights(rng, 3);
    const W0 = rng.f32(din * dout);
    const W = new Float32Array(din * dout);
    kernels.setThreads(1);
    try {
      await expectWritesWhileMainThreadSpins(
        () => W.set(W0),
        () => kernels.mergeExpertsAsync(tb.bank, ids, w, W, { inPlace: true }),
        () => W[din * dout - 1] !== W0[din * dout - 1],
      );
    } finally {
      await setThreadsSettled(0);
      tb.bank.dispose();
    }
  });
});

// ---- argument validation (test/helpers/validation.ts) ----

describe('mergeExperts validation', () => {
  it('a w of the wrong length is a RangeError naming w, and one of the wrong type a TypeError', async () => {
    const f = fixture();
    for (const W of [f.rng.f32(din * dout + 1), f.rng.f32(din * dout - 1)]) {
      await bothFail(() => kernels.mergeExperts(f.bank, f.mIds, f.mW, W), () => kernels.mergeExpertsAsync(f.bank, f.mIds, f.mW, W), RangeError, /for w\b/);
    }
    const W64 = new Float64Array(din * dout);
    await bothFail(() => kernels.mergeExperts(f.bank, f.mIds, f.mW, W64 as never), () => kernels.mergeExpertsAsync(f.bank, f.mIds, f.mW, W64 as never), TypeError, /for w\b/);
  });

  it('weights whose length differs from ids is a RangeError naming weights; wrong types are TypeErrors', async () => {
    const f = fixture();
    const w3 = f.rng.f32(3);
    await bothFail(() => kernels.mergeExperts(f.bank, f.mIds, w3, f.W), () => kernels.mergeExpertsAsync(f.bank, f.mIds, w3, f.W), RangeError, /weights/);
    const idsF = Float32Array.from(f.mIds) as never;
    await bothFail(() => kernels.mergeExperts(f.bank, idsF, f.mW, f.W), () => kernels.mergeExpertsAsync(f.bank, idsF, f.mW, f.W), TypeError, /\bids\b/);
  });

  it('an id out of range or a NaN weight is a RangeError naming it, and W (in place) is left untouched', async () => {
    const f = fixture();
    for (const [ids, w, re] of [
      [Int32Array.from([0, 3]), f.mW, /\bids\b/],
      [Int32Array.from([-2, 0]), f.mW, /\bids\b/],
      [f.mIds, Float32Array.from([0.5, NaN]), /weights/],
    ] as const) {
      const W = f.W.slice();
      await bothFail(
        () => kernels.mergeExperts(f.bank, ids, w, W, { inPlace: true }), () => kernels.mergeExpertsAsync(f.bank, ids, w, W, { inPlace: true }),
        RangeError, re,
      );
      expectBitsEqual(W, f.W, 'W after a refused in-place merge');
    }
  });

  it('an unknown layout is an error naming opts.layout', async () => {
    const f = fixture();
    for (const layout of ['row_major', 'IN_OUT', 'toString']) {
      await bothFail(
        () => kernels.mergeExperts(f.bank, f.mIds, f.mW, f.W, { layout: layout as never }),
        () => kernels.mergeExpertsAsync(f.bank, f.mIds, f.mW, f.W, { layout: layout as never }),
        TypeError, /layout/,
      );
    }
  });
});

describe('native binding validation (the C++ layer on its own)', () => {
  it('mergeExperts: a bad layout number or type, w off by one', async () => {
    const f = nativeFixture();
    const cases: Array<[unknown[], ErrorClass, RegExp]> = [
      [[f.mIds, f.mW, f.W, 2, false], RangeError, /layout/],
      [[f.mIds, f.mW, f.W, -1, false], RangeError, /layout/],
      [[f.mIds, f.mW, f.W, '0', false], TypeError, /layout/],
      [[f.mIds, f.mW, f.W.subarray(1), 0, false], RangeError, /for w\b/],
      [[f.mIds, f.mW.subarray(1), f.W, 0, false], RangeError, /weights/],
    ];
    for (const [args, cls, re] of cases) {
      const a = args as [Int32Array, Float32Array, Float32Array, number, boolean];
      await bothFail(() => nb().mergeExperts(f.nbank, ...a), () => nb().mergeExpertsAsync(f.nbank, ...a), cls, re);
    }
  });
});

describe('async variants report errors by rejecting their Promise', () => {
  // The argument checks made while the call is made reject too (binding.test.ts has the data errors).
  it('mergeExpertsAsync rejects (does not throw) for a disposed bank', async () => {
    const f = fixture();
    f.bank.dispose();
    await expectRejectsOnly(() => kernels.mergeExpertsAsync(f.bank, f.mIds, f.mW, f.W), Error, /disposed/);
  });
});

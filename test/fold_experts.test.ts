// foldExperts / foldExpertsAsync against the float64 reference, on poisoned outputs.
//
// Every output slot starts as NaN with a recognisable payload (POISON_BITS). After a call:
//   - slots not named (by out.slots, or past B without it) hold the poison bit for bit;
//   - named slots hold no NaN at all;
//   - out.a equals the reference exactly: A_cat is a copy (f16/bf16 decode exactly to f32, and
//     the reference decodes the same bits);
//   - out.b is within 3u·|ref| (u = 2⁻²⁴): c = fl(w·s), then fl(c·B), two roundings; this is
//     the same for every bank dtype;
//   - unused rank columns / rows and the blocks of -1 ids are exactly 0.
//
// Then its argument validation (test/helpers/validation.ts): each bad argument a TypeError or
// RangeError naming it, sync and async alike, through the TS API and the raw native binding.
// The op on the CUDA device: test/device_fold_experts.test.ts.
import { kernels, reference } from '../lib';
import { binding } from '../lib/kernels/binding';
import { expectWritesWhileMainThreadSpins } from './helpers/async';
import {
  absArray, BANK_KINDS, describeEachSimd, randomBank, randomIds, randomWeights, TestBank,
} from './helpers/bank';
import {
  boundFrom, countNaN, countPoisoned, expectBitsEqual, expectClose, expectRejectsOnly, poison, POISON_BITS,
} from './helpers/check';
import { seedNote, testRng } from './helpers/rng';
import { setThreadsSettled } from './helpers/threads';
import {
  bothFail, din, dout, E, ErrorClass, fixture, k, nativeFixture, nb, r,
} from './helpers/validation';

/** Relative bound of one out.b element: two f32 roundings (w·s, then ·B), plus γ slack. */
const FOLD_B_UNITS = 3;

interface Case {
  name: string;
  E: number;
  r: number;
  din: number;
  dout: number;
  k: number;
  B: number;
  R: number;
  numSlots: number;
  slots?: number[];
  ranks?: number[];
  repeats?: boolean;
}

const CASES: Case[] = [
  { name: 'din=1 dout=1 E=1 r=1 k=1 B=1 R=1', E: 1, r: 1, din: 1, dout: 1, k: 1, B: 1, R: 1, numSlots: 1 },
  { name: 'din=7 dout=5 E=3 r=4 k=E B=2 R=12 slots [2,0] of 4', E: 3, r: 4, din: 7, dout: 5, k: 3, B: 2, R: 12, numSlots: 4, slots: [2, 0] },
  { name: 'din=17 dout=33 E=4 r=1 k=2 B=3 R=5 (R > k·r), 5 slots without out.slots', E: 4, r: 1, din: 17, dout: 33, k: 2, B: 3, R: 5, numSlots: 5 },
  { name: 'din=33 dout=17 E=5 r=64 k=2 B=2 R=128 slots [1,3] of 4', E: 5, r: 64, din: 33, dout: 17, k: 2, B: 2, R: 128, numSlots: 4, slots: [1, 3] },
  { name: 'din=1031 dout=1029 E=4 r=8 k=2 B=3 R=20 slots [4,0,2] of 5 (parallel)', E: 4, r: 8, din: 1031, dout: 1029, k: 2, B: 3, R: 20, numSlots: 5, slots: [4, 0, 2] },
  { name: 'din=300 dout=9 E=3 r=100 k=3 B=2 R=300 (several row tasks per slot)', E: 3, r: 100, din: 300, dout: 9, k: 3, B: 2, R: 300, numSlots: 2 },
  { name: 'mixed ranks [6,0,3,1] din=29 dout=23 k=3 B=4 R=20 slots [5,1,3,0] of 6', E: 4, r: 6, din: 29, dout: 23, k: 3, B: 4, R: 20, numSlots: 6, slots: [5, 1, 3, 0], ranks: [6, 0, 3, 1] },
  { name: 'repeated ids within a row din=12 dout=10 E=2 r=3 k=2 B=3 R=6', E: 2, r: 3, din: 12, dout: 10, k: 2, B: 3, R: 6, numSlots: 3, repeats: true },
  { name: 'B=0 (nothing written) din=8 dout=6 E=2 r=2 k=2 R=4, 2 slots', E: 2, r: 2, din: 8, dout: 6, k: 2, B: 0, R: 4, numSlots: 2 },
];

interface Outputs {
  a: Float32Array;
  b: Float32Array;
}

/** Runs the checks listed at the top of the file; returns the (sync) outputs. */
function checkFold(tb: TestBank, c: Case, ids: Int32Array, w: Float32Array, got: Outputs, what: string): void {
  const { din, dout } = c;
  const R = c.R;
  const refA = new Float64Array(c.numSlots * din * R).fill(NaN);
  const refB = new Float64Array(c.numSlots * R * dout).fill(NaN);
  reference.refFoldExperts(tb.ref, ids, w, c.k, { a: refA, b: refB, rankCapacity: R, slots: c.slots });
  const named = new Set(c.slots ?? Array.from({ length: c.B }, (_, i) => i));
  const aLen = din * R, bLen = R * dout;
  for (let s = 0; s < c.numSlots; s++) {
    const a = got.a.subarray(s * aLen, (s + 1) * aLen), b = got.b.subarray(s * bLen, (s + 1) * bLen);
    if (!named.has(s)) {
      if (countPoisoned(a) !== aLen || countPoisoned(b) !== bLen) {
        throw new Error(`${what}: slot ${s} was not named but ${aLen - countPoisoned(a)} of out.a and ${bLen - countPoisoned(b)} of out.b lost their poison (${seedNote()})`);
      }
      continue;
    }
    const ra = refA.subarray(s * aLen, (s + 1) * aLen), rb = refB.subarray(s * bLen, (s + 1) * bLen);
    if (countNaN(a) || countNaN(b)) {
      throw new Error(`${what}: slot ${s} still holds ${countNaN(a)} NaN in out.a and ${countNaN(b)} in out.b (${seedNote()})`);
    }
    expectClose(a, ra, 0, `${what}: out.a slot ${s} (exact)`);
    expectClose(b, rb, boundFrom(absArray(rb), FOLD_B_UNITS), `${what}: out.b slot ${s}`);
    for (let i = 0; i < bLen; i++) {
      if (rb[i] === 0 && b[i] !== 0) throw new Error(`${what}: out.b slot ${s} index ${i} is ${b[i]}, expected exactly 0 (${seedNote()})`);
    }
  }
}

describe('foldExperts', () => {
  describeEachSimd(() => {
    for (const kind of BANK_KINDS) {
      describe(kind.label, () => {
        it.each(CASES)('writes the reference A_cat/B_cat into the named slots only, sync and async: $name', async (c) => {
          const rng = testRng();
          const tb = randomBank(rng, { E: c.E, r: c.r, din: c.din, dout: c.dout, dtype: kind.dtype, input: kind.input, ranks: c.ranks });
          const ids = randomIds(rng, c.B, c.k, c.E, { repeats: c.repeats, forceMinusOneRows: [1] });
          const w = randomWeights(rng, c.B * c.k);
          const slots = c.slots ? Int32Array.from(c.slots) : undefined;
          const out = {
            a: poison(new Float32Array(c.numSlots * c.din * c.R)),
            b: poison(new Float32Array(c.numSlots * c.R * c.dout)),
            rankCapacity: c.R,
            slots,
          };
          expect(kernels.foldExperts(tb.bank, ids, w, c.k, out)).toBeUndefined();
          checkFold(tb, c, ids, w, out, `foldExperts ${c.name} ${kind.label}`);

          const outA = { ...out, a: poison(new Float32Array(out.a.length)), b: poison(new Float32Array(out.b.length)) };
          await expect(kernels.foldExpertsAsync(tb.bank, ids, w, c.k, outA)).resolves.toBeUndefined();
          expectBitsEqual(outA.a, out.a, 'foldExpertsAsync out.a vs sync');
          expectBitsEqual(outA.b, out.b, 'foldExpertsAsync out.b vs sync');
          tb.bank.dispose();
        });
      });
    }
  });

  it('a request of only -1 ids gets an all-zero slot; unused rank columns and rows are exactly 0', () => {
    const rng = testRng();
    const E = 3, r = 4, din = 9, dout = 7, k = 2, R = 11;
    const tb = randomBank(rng, { E, r, din, dout, ranks: [4, 2, 3] });
    const ids = Int32Array.from([-1, -1, 1, -1]);
    const out = { a: poison(new Float32Array(2 * din * R)), b: poison(new Float32Array(2 * R * dout)), rankCapacity: R };
    kernels.foldExperts(tb.bank, ids, randomWeights(rng, 4), k, out);
    expect(Array.from(out.a.subarray(0, din * R)).every((v) => v === 0)).toBe(true);
    expect(Array.from(out.b.subarray(0, R * dout)).every((v) => v === 0)).toBe(true);
    // request 1: expert 1 (rank 2) in block 0 -> columns 0,1 nonzero; 2..10 zero
    for (let i = 0; i < din; i++) {
      for (let col = 0; col < R; col++) {
        const v = out.a[din * R + i * R + col];
        if (col < 2) expect(v).not.toBe(0);
        else expect(v).toBe(0);
      }
    }
    for (let row = 0; row < R; row++) {
      const rowVals = Array.from(out.b.subarray(R * dout + row * dout, R * dout + (row + 1) * dout));
      expect(rowVals.every((v) => v === 0)).toBe(row >= 2);
    }
  });

  it('x · A_cat · B_cat of a slot equals loraMoe for the same mix (the ONNX injection identity)', () => {
    const rng = testRng();
    const E = 5, r = 6, din = 45, dout = 31, k = 3, B = 4, R = 20;
    const tb = randomBank(rng, { E, r, din, dout, ranks: [6, 3, 0, 5, 1] });
    const ids = randomIds(rng, B, k, E, { forceMinusOneRows: [2] });
    const w = randomWeights(rng, B * k);
    const out = { a: poison(new Float32Array(B * din * R)), b: poison(new Float32Array(B * R * dout)), rankCapacity: R };
    kernels.foldExperts(tb.bank, ids, w, k, out);
    const x = rng.f32(B * din);
    const y = kernels.loraMoe(tb.bank, x, ids, w);
    const viaFold = new Float64Array(B * dout);
    for (let s = 0; s < B; s++) {
      const h = new Float64Array(R);
      for (let c = 0; c < R; c++) for (let i = 0; i < din; i++) h[c] += x[s * din + i] * out.a[(s * din + i) * R + c];
      for (let o = 0; o < dout; o++) for (let c = 0; c < R; c++) viaFold[s * dout + o] += h[c] * out.b[(s * R + c) * dout + o];
    }
    const mag = reference.refLoraMoe(tb.abs, absArray(x), ids, absArray(w));
    // loraMoe's own bound plus fold's 3u on B_cat
    expectClose(y, viaFold, boundFrom(mag, din + r + k + 8 + FOLD_B_UNITS), 'loraMoe vs x·A_cat·B_cat');
  });

  it('writes through out.a / out.b / slots given as subarray views at a byte offset, and nothing outside them', async () => {
    const rng = testRng();
    const c: Case = { name: 'views', E: 3, r: 2, din: 11, dout: 13, k: 2, B: 2, R: 5, numSlots: 3, slots: [2, 0] };
    const tb = randomBank(rng, c);
    const ids = randomIds(rng, c.B, c.k, c.E, { allMinusOneRate: 0 });
    const w = randomWeights(rng, c.B * c.k);
    const aBig = poison(new Float32Array(c.numSlots * c.din * c.R + 7));
    const bBig = poison(new Float32Array(c.numSlots * c.R * c.dout + 5));
    const slotsBig = Int32Array.from([9, 9, 2, 0, 9]);
    const out = {
      a: aBig.subarray(3, 3 + c.numSlots * c.din * c.R),
      b: bBig.subarray(1, 1 + c.numSlots * c.R * c.dout),
      rankCapacity: c.R,
      slots: slotsBig.subarray(2, 4),
    };
    kernels.foldExperts(tb.bank, ids, w, c.k, out);
    checkFold(tb, c, ids, w, out, 'views');
    expect(countPoisoned(aBig, 0, 3) + countPoisoned(aBig, 3 + out.a.length)).toBe(7);
    expect(countPoisoned(bBig, 0, 1) + countPoisoned(bBig, 1 + out.b.length)).toBe(5);
    const again = { ...out, a: poison(out.a.slice()), b: poison(out.b.slice()) };
    await kernels.foldExpertsAsync(tb.bank, ids, w, c.k, again);
    expectBitsEqual(again.a, out.a, 'async views out.a');
    expectBitsEqual(again.b, out.b, 'async views out.b');
  });

  it('a second fold into a used slot overwrites every element of it', () => {
    const rng = testRng();
    const c: Case = { name: 'overwrite', E: 4, r: 3, din: 10, dout: 8, k: 2, B: 1, R: 7, numSlots: 1 };
    const tb = randomBank(rng, { ...c, ranks: [3, 1, 2, 3] });
    const out = { a: poison(new Float32Array(c.din * c.R)), b: poison(new Float32Array(c.R * c.dout)), rankCapacity: c.R };
    kernels.foldExperts(tb.bank, Int32Array.from([0, 3]), randomWeights(rng, 2), 2, out);
    const ids = Int32Array.from([1, -1]);
    const w = randomWeights(rng, 2);
    kernels.foldExperts(tb.bank, ids, w, 2, out);
    checkFold(tb, c, ids, w, out, 'second fold');
  });

  it('foldExpertsAsync runs off the main thread (its output fills while the main thread spins)', async () => {
    const rng = testRng();
    const E = 8, r = 64, din = 2048, dout = 2048, k = 8, B = 8, R = 512;
    const tb = randomBank(rng, { E, r, din, dout, dtype: 'bf16' });
    const ids = randomIds(rng, B, k, E, { skipRate: 0, allMinusOneRate: 0, maxRun: 1 });
    const w = randomWeights(rng, B * k);
    const out = { a: new Float32Array(B * din * R), b: new Float32Array(B * R * dout), rankCapacity: R };
    const lastB = new Uint32Array(out.b.buffer, out.b.byteOffset + (out.b.length - 1) * 4, 1);
    kernels.setThreads(1);
    try {
      await expectWritesWhileMainThreadSpins(
        () => poison(out.b),
        () => kernels.foldExpertsAsync(tb.bank, ids, w, k, out),
        () => lastB[0] !== POISON_BITS,
      );
    } finally {
      await setThreadsSettled(0);
      tb.bank.dispose();
    }
  });
});

// ---- argument validation (test/helpers/validation.ts) ----

describe('foldExperts validation', () => {
  const fold = (f: ReturnType<typeof fixture>, o: Partial<Record<'ids' | 'w' | 'k', unknown>> & { out?: unknown } = {}) => {
    const args = [f.bank, (o.ids ?? f.ids) as Int32Array, (o.w ?? f.w) as Float32Array, (o.k ?? k) as number, ('out' in o ? o.out : f.out()) as kernels.FoldOutput] as const;
    return [() => kernels.foldExperts(...args), () => kernels.foldExpertsAsync(...args)] as const;
  };

  it('ids, weights, out.a, out.b or out.slots of the wrong type is a TypeError naming it', async () => {
    const f = fixture();
    const base = f.out();
    const cases: Array<[Parameters<typeof fold>[1], RegExp]> = [
      [{ ids: Float32Array.from(f.ids) }, /\bids\b/],
      [{ w: Int32Array.from([1, 1, 1, 1]) }, /weights/],
      [{ out: { ...base, a: new Float64Array(base.a.length) } }, /out\.a/],
      [{ out: { ...base, b: Array.from(base.b) } }, /out\.b/],
      [{ out: { ...base, slots: Float32Array.from([2, 0]) } }, /slots/],
      [{ out: { ...base, rankCapacity: '4' } }, /rankCapacity/],
    ];
    for (const [o, re] of cases) await bothFail(...fold(f, o), TypeError, re);
  });

  it('an out that is not an object is a TypeError naming out', async () => {
    const f = fixture();
    for (const bad of [null, undefined, 7]) await bothFail(...fold(f, { out: bad }), TypeError, /\bout\b/);
  });

  it('out.a / out.b lengths that do not match the slots are RangeErrors naming them', async () => {
    const f = fixture();
    const base = f.out();
    await bothFail(...fold(f, { out: { ...base, a: new Float32Array(base.a.length + 1) } }), RangeError, /out\.a/);
    await bothFail(...fold(f, { out: { ...base, a: new Float32Array(base.a.length - din * base.rankCapacity) } }), RangeError, /out\.b/);
    await bothFail(...fold(f, { out: { ...base, b: new Float32Array(base.b.length - 1) } }), RangeError, /out\.b/);
    // room for one slot only, two requests, no out.slots
    await bothFail(
      ...fold(f, { out: { a: new Float32Array(din * base.rankCapacity), b: new Float32Array(base.rankCapacity * dout), rankCapacity: base.rankCapacity } }),
      RangeError, /out\.a/,
    );
  });

  it('out.slots of the wrong length, with a duplicate or out of range is a RangeError naming slots, and out is left untouched', async () => {
    const f = fixture();
    for (const slots of [[2], [2, 0, 1], [1, 1], [3, 0], [0, -1]]) {
      const out = { ...f.out(), slots: Int32Array.from(slots) };
      await bothFail(...fold(f, { out }), RangeError, /slots/);
      expect(countPoisoned(out.a) + countPoisoned(out.b)).toBe(out.a.length + out.b.length);
    }
  });

  it('a rankCapacity below k·rank, or not an integer, is a RangeError naming rankCapacity', async () => {
    const f = fixture();
    for (const R of [k * r - 1, 0, -4, 4.5, NaN]) {
      await bothFail(...fold(f, { out: { ...f.out(), rankCapacity: R } }), RangeError, /rankCapacity/);
    }
  });

  it('k > experts, k < 1 or ids not a multiple of k is a RangeError naming k or ids', async () => {
    const f = fixture();
    await bothFail(...fold(f, { k: E + 1, ids: new Int32Array(E + 1).fill(-1), w: f.rng.f32(E + 1) }), RangeError, /\bk\b/);
    await bothFail(...fold(f, { k: 0 }), RangeError, /\bk\b/);
    await bothFail(...fold(f, { ids: Int32Array.from([0, 1, 2]), w: f.rng.f32(3) }), RangeError, /\bids\b/);
  });

  it('weights whose length differs from ids is a RangeError naming weights', async () => {
    const f = fixture();
    await bothFail(...fold(f, { w: f.rng.f32(5) }), RangeError, /weights/);
  });

  it('an id out of range or a NaN weight is a RangeError naming it, and out is left untouched', async () => {
    const f = fixture();
    for (const [o, re] of [[{ ids: Int32Array.from([0, 3, 1, 2]) }, /\bids\b/], [{ ids: Int32Array.from([0, 1, -5, 2]) }, /\bids\b/], [{ w: Float32Array.from([1, NaN, 1, 1]) }, /weights/]] as const) {
      const out = f.out();
      await bothFail(...fold(f, { ...o, out }), RangeError, re);
      expect(countPoisoned(out.a) + countPoisoned(out.b)).toBe(out.a.length + out.b.length);
    }
  });
});

describe('native binding validation (the C++ layer on its own)', () => {
  it('foldExperts: non-integer, negative and string k / rankCapacity, lengths off by one, bad slots', async () => {
    const f = nativeFixture();
    const R = k * r;
    const A = () => poison(new Float32Array(3 * din * R)), B = () => poison(new Float32Array(3 * R * dout));
    const cases: Array<[unknown[], ErrorClass, RegExp]> = [
      [[f.ids, f.w, 2.5, A(), B(), R], RangeError, /\bk\b/],
      [[f.ids, f.w, -2, A(), B(), R], RangeError, /\bk\b/],
      [[f.ids, f.w, '2', A(), B(), R], TypeError, /\bk\b/],
      [[f.ids, f.w, k, A(), B(), -1], RangeError, /rankCapacity/],
      [[f.ids, f.w, k, A(), B(), 4.25], RangeError, /rankCapacity/],
      [[f.ids, f.w, k, A(), B(), '4'], TypeError, /rankCapacity/],
      [[f.ids, f.w, k, new Float32Array(3 * din * R + 1), B(), R], RangeError, /out\.a/],
      [[f.ids, f.w, k, A(), new Float32Array(3 * R * dout - 1), R], RangeError, /out\.b/],
      [[f.ids, f.w, k, A(), B(), R, Int32Array.from([0, 0])], RangeError, /slots/],
      [[f.ids, f.w, k, A(), B(), R, Int32Array.from([0, 3])], RangeError, /slots/],
      [[f.ids, f.w, k, A(), B(), R, Int32Array.from([0])], RangeError, /slots/],
      [[f.ids, f.w, k, A(), B(), R, null], TypeError, /slots/],
      [[f.ids, f.w.subarray(1), k, A(), B(), R], RangeError, /weights/],
    ];
    for (const [args, cls, re] of cases) {
      const a = args as Parameters<ReturnType<typeof binding>['foldExperts']> extends [unknown, ...infer Rest] ? Rest : never;
      await bothFail(() => nb().foldExperts(f.nbank, ...a), () => nb().foldExpertsAsync(f.nbank, ...a), cls, re);
    }
  });
});

describe('async variants report errors by rejecting their Promise', () => {
  // The argument checks made while the call is made reject too (binding.test.ts has the data errors).
  it('foldExpertsAsync rejects (does not throw) for an out.b of the wrong length', async () => {
    const f = fixture();
    const out = f.out();
    await expectRejectsOnly(() => kernels.foldExpertsAsync(f.bank, f.ids, f.w, k, { ...out, b: out.b.subarray(1) }), RangeError, /out\.b/);
  });
});

// loraMoe / loraMoeAsync against the float64 reference.
//
// Tolerance (all bank dtypes alike, see ACCUM_UNITS): the reference is given the very same
// inputs, and for f16/bf16 banks the very same rounded bits, which both sides decode to f32
// exactly. What is left is float32 arithmetic. Each output element
//   y[t,o] = y0 + Σ_j w s Σ_q B[o,q] Σ_i A[q,i] x[i]
// passes every product through at most din (shrink) + r (expand) + k (experts) + 8 (w·s, the
// gate product, partial-sum merges, the final add) roundings, whatever the summation order, so
//   |got − ref| ≤ (din + r + k + 8) · u · M,   u = 2⁻²⁴,
//   M = |y0| + Σ_j |w s| Σ_q |B[o,q]| Σ_i |A[q,i] x[i]|   (the reference run on |inputs|)
// is a worst-case bound (no flakes on fresh data). It is still tight: a single dropped x element
// or a wrong dtype decode (bf16 is 2⁻⁹ relative) misses it by orders of magnitude, which the
// "tolerance would notice" case below demonstrates.
//
// Then its argument validation (test/helpers/validation.ts): each bad argument a TypeError or
// RangeError naming it, sync and async alike, through the TS API and the raw native binding.
// The op on the CUDA device: test/device_lora_moe.test.ts.
import { kernels, reference } from '../lib';
import { expectWritesWhileMainThreadSpins } from './helpers/async';
import {
  absArray, BANK_KINDS, describeEachSimd, Dtype, randomBank, randomIds, randomWeights,
} from './helpers/bank';
import {
  boundFrom, expectBitsEqual, expectClose, expectRejectsOnly, typedArrayTag, U32,
} from './helpers/check';
import { testRng } from './helpers/rng';
import { setThreadsSettled } from './helpers/threads';
import {
  bothFail, din, dout, E, ErrorClass, fixture, k, nativeFixture, nb, T,
} from './helpers/validation';

/** Relative rounding unit of the f32 accumulation, per bank dtype (equal: decoding is exact). */
const ACCUM_UNITS: Record<Dtype, number> = { f32: U32, f16: U32, bf16: U32 };

const roundings = (din: number, r: number, k: number) => din + r + k + 8;

interface Case {
  name: string;
  E: number;
  r: number;
  din: number;
  dout: number;
  k: number;
  T: number;
  ranks?: number[];
  repeats?: boolean;
  scales?: boolean;
}

const CASES: Case[] = [
  { name: 'din=1 dout=1 E=1 r=1 k=1 T=1', E: 1, r: 1, din: 1, dout: 1, k: 1, T: 1 },
  { name: 'din=7 dout=5 E=3 r=4 k=E T=5', E: 3, r: 4, din: 7, dout: 5, k: 3, T: 5 },
  { name: 'din=17 dout=33 E=4 r=1 k=2 T=9 (no scales option)', E: 4, r: 1, din: 17, dout: 33, k: 2, T: 9, scales: false },
  { name: 'din=33 dout=17 E=5 r=64 k=2 T=6', E: 5, r: 64, din: 33, dout: 17, k: 2, T: 6 },
  { name: 'din=1037 dout=1031 E=4 r=8 k=2 T=3 (decode path, parallel)', E: 4, r: 8, din: 1037, dout: 1031, k: 2, T: 3 },
  { name: 'din=65 dout=100 E=6 r=16 k=3 T=130 (token tiles)', E: 6, r: 16, din: 65, dout: 100, k: 3, T: 130 },
  { name: 'din=100 dout=70 E=8 r=64 k=E T=17', E: 8, r: 64, din: 100, dout: 70, k: 8, T: 17 },
  { name: 'mixed ranks [12,0,5,1,7] din=31 dout=29 k=3 T=8', E: 5, r: 12, din: 31, dout: 29, k: 3, T: 8, ranks: [12, 0, 5, 1, 7] },
  { name: 'repeated ids within a row din=9 dout=11 E=2 r=3 k=2 T=6', E: 2, r: 3, din: 9, dout: 11, k: 2, T: 6, repeats: true },
  { name: 'T=0 din=24 dout=8 E=3 r=2 k=2', E: 3, r: 2, din: 24, dout: 8, k: 2, T: 0 },
];

function rowsAllMinusOne(ids: Int32Array, T: number, k: number): number[] {
  const rows: number[] = [];
  for (let t = 0; t < T; t++) if (ids.subarray(t * k, (t + 1) * k).every((e) => e === -1)) rows.push(t);
  return rows;
}

describe('loraMoe', () => {
  describeEachSimd(() => {
    for (const kind of BANK_KINDS) {
      describe(kind.label, () => {
        it.each(CASES)('matches the float64 reference within the f32 accumulation bound, sync and async: $name', async (c) => {
          const rng = testRng();
          const tb = randomBank(rng, { E: c.E, r: c.r, din: c.din, dout: c.dout, dtype: kind.dtype, input: kind.input, ranks: c.ranks, scales: c.scales });
          const x = rng.f32(c.T * c.din);
          const ids = randomIds(rng, c.T, c.k, c.E, { repeats: c.repeats, forceMinusOneRows: [1] });
          const w = randomWeights(rng, c.T * c.k);
          const units = roundings(c.din, c.r, c.k);
          const unit = ACCUM_UNITS[kind.dtype];

          // fresh output
          const y = kernels.loraMoe(tb.bank, x, ids, w);
          const ref = reference.refLoraMoe(tb.ref, x, ids, w);
          const mag = reference.refLoraMoe(tb.abs, absArray(x), ids, absArray(w));
          expectClose(y, ref, boundFrom(mag, units, unit), `loraMoe ${c.name} ${kind.label}`);

          // accumulate into random y
          const y0 = rng.f32(c.T * c.dout, -4, 4);
          const yAcc = y0.slice();
          const ret = kernels.loraMoe(tb.bank, x, ids, w, { y: yAcc });
          expect(ret).toBe(yAcc);
          const refAcc = reference.refLoraMoe(tb.ref, x, ids, w, y0);
          const magAcc = reference.refLoraMoe(tb.abs, absArray(x), ids, absArray(w), absArray(y0));
          expectClose(yAcc, refAcc, boundFrom(magAcc, units, unit), `loraMoe accumulate ${c.name} ${kind.label}`);

          // base-only rows: exactly 0 when fresh, bit-identical to y0 when accumulating
          for (const t of rowsAllMinusOne(ids, c.T, c.k)) {
            expect(Array.from(y.subarray(t * c.dout, (t + 1) * c.dout)).every((v) => v === 0)).toBe(true);
            expectBitsEqual(yAcc.subarray(t * c.dout, (t + 1) * c.dout), y0.subarray(t * c.dout, (t + 1) * c.dout), `row ${t} of -1 ids`);
          }

          // async: the same bits as sync
          const yA = await kernels.loraMoeAsync(tb.bank, x, ids, w);
          expectBitsEqual(yA, y, 'loraMoeAsync vs loraMoe');
          const yAccA = y0.slice();
          const retA = await kernels.loraMoeAsync(tb.bank, x, ids, w, { y: yAccA });
          expect(retA).toBe(yAccA);
          expectBitsEqual(yAccA, yAcc, 'loraMoeAsync accumulate vs loraMoe accumulate');
          tb.bank.dispose();
        });
      });
    }
  });

  it('a row of -1 ids leaves y unchanged, bit for bit, while the other rows change', () => {
    const rng = testRng();
    const tb = randomBank(rng, { E: 4, r: 8, din: 40, dout: 36 });
    const T = 5, k = 2;
    const ids = Int32Array.from([0, 1, -1, -1, 2, -1, -1, -1, 3, 0]);
    const w = randomWeights(rng, T * k);
    const y0 = rng.f32(T * 36);
    const y = y0.slice();
    kernels.loraMoe(tb.bank, rng.f32(T * 40), ids, w, { y });
    for (let t = 0; t < T; t++) {
      const got = y.subarray(t * 36, (t + 1) * 36);
      const was = y0.subarray(t * 36, (t + 1) * 36);
      if (t === 1 || t === 3) expectBitsEqual(got, was, `row ${t} (all -1)`);
      else expect(got.some((v, i) => v !== was[i])).toBe(true);
    }
  });

  it('an expert of rank 0 contributes nothing (y unchanged) and its padding is never read', () => {
    const rng = testRng();
    // expert 1 has rank 0: its A rows and B columns are all NaN in the input (randomBank pads with NaN)
    const tb = randomBank(rng, { E: 3, r: 6, din: 23, dout: 19, ranks: [6, 0, 2] });
    const T = 4;
    const ids = Int32Array.from([1, -1, -1, 1, 1, 1, 1, -1]);
    const y0 = rng.f32(T * 19);
    const y = y0.slice();
    kernels.loraMoe(tb.bank, rng.f32(T * 23), ids, randomWeights(rng, T * 2), { y });
    expectBitsEqual(y, y0, 'y after rank-0-only rows');
    // expert 2 (rank 2 of 6, NaN beyond) gives finite results
    const y2 = kernels.loraMoe(tb.bank, rng.f32(23), Int32Array.from([2, 0]), randomWeights(rng, 2));
    expect(y2.every(Number.isFinite)).toBe(true);
  });

  it('f16/bf16 banks from Float32Array and from kernels.toBits bits give identical results', () => {
    const rng = testRng();
    for (const dtype of ['f16', 'bf16'] as const) {
      const E = 3, r = 5, din = 37, dout = 21, T = 6, k = 2;
      const a = rng.f32(E * r * din), b = rng.f32(E * dout * r);
      const scales = Float32Array.from([0.5, -1.25, 2]);
      const fromFloat = kernels.createLoraBank({ experts: E, rank: r, din, dout, dtype, a, b, scales });
      const fromBits = kernels.createLoraBank({
        experts: E, rank: r, din, dout, dtype, a: kernels.toBits(a, dtype), b: kernels.toBits(b, dtype), scales,
      });
      const x = rng.f32(T * din), ids = randomIds(rng, T, k, E), w = randomWeights(rng, T * k);
      expectBitsEqual(kernels.loraMoe(fromFloat, x, ids, w), kernels.loraMoe(fromBits, x, ids, w), `${dtype} float vs bits`);
      fromFloat.dispose();
      fromBits.dispose();
    }
  });

  it('the tolerance would notice a wrong dtype: a bf16 bank against an unrounded reference breaks the bound', () => {
    const rng = testRng();
    const E = 3, r = 8, din = 64, dout = 48, T = 4, k = 2;
    const a = rng.f32(E * r * din), b = rng.f32(E * dout * r);
    const bank = kernels.createLoraBank({ experts: E, rank: r, din, dout, dtype: 'bf16', a, b });
    const unrounded = reference.refBank({ experts: E, rank: r, din, dout, a, b, dtype: 'f32' });
    const absRef = reference.refBank({ experts: E, rank: r, din, dout, a: a.map(Math.abs), b: b.map(Math.abs), dtype: 'f32' });
    const x = rng.f32(T * din), ids = randomIds(rng, T, k, E, { skipRate: 0, allMinusOneRate: 0 }), w = randomWeights(rng, T * k);
    const y = kernels.loraMoe(bank, x, ids, w);
    const bound = boundFrom(reference.refLoraMoe(absRef, absArray(x), ids, absArray(w)), roundings(din, r, k));
    expect(() => expectClose(y, reference.refLoraMoe(unrounded, x, ids, w), bound, 'bf16 vs f32 reference')).toThrow(/outside the bound/);
    bank.dispose();
  });

  it('reads inputs and accumulates into y given as subarray views at a byte offset', async () => {
    const rng = testRng();
    const tb = randomBank(rng, { E: 4, r: 4, din: 19, dout: 13 });
    const T = 3, k = 2;
    const xBig = rng.f32(T * 19 + 5), idsBig = new Int32Array(T * k + 3).fill(7), wBig = rng.f32(T * k + 2);
    const x = xBig.subarray(3, 3 + T * 19);
    const ids = idsBig.subarray(1, 1 + T * k);
    ids.set(randomIds(rng, T, k, 4, { allMinusOneRate: 0 }));
    const w = wBig.subarray(2, 2 + T * k);
    const yBig = rng.f32(T * 13 + 8);
    const before = yBig.slice();
    const y = yBig.subarray(4, 4 + T * 13);
    const y0 = y.slice();
    kernels.loraMoe(tb.bank, x, ids, w, { y });
    const bound = boundFrom(reference.refLoraMoe(tb.abs, absArray(x), ids, absArray(w), absArray(y0)), roundings(19, 4, k));
    expectClose(y, reference.refLoraMoe(tb.ref, x, ids, w, y0), bound, 'views');
    // nothing outside the view was written
    expectBitsEqual(yBig.subarray(0, 4), before.subarray(0, 4), 'before the y view');
    expectBitsEqual(yBig.subarray(4 + T * 13), before.subarray(4 + T * 13), 'after the y view');
    const yA = y0.slice();
    await kernels.loraMoeAsync(tb.bank, x, ids, w, { y: yA });
    expectBitsEqual(yA, y, 'async with views');
  });

  it('returns a new zero-based Float32Array of length T*dout without opts.y', () => {
    const rng = testRng();
    const tb = randomBank(rng, { E: 2, r: 3, din: 8, dout: 6 });
    const x = rng.f32(2 * 8);
    const ids = Int32Array.from([-1, -1]);
    const y = kernels.loraMoe(tb.bank, x, ids, rng.f32(2));
    expect(typedArrayTag(y)).toBe('Float32Array');
    expect(y.length).toBe(12);
    expect(Array.from(y)).toEqual(new Array(12).fill(0));
    const empty = kernels.loraMoe(tb.bank, new Float32Array(0), new Int32Array(0), new Float32Array(0));
    expect(typedArrayTag(empty)).toBe('Float32Array');
    expect(empty.length).toBe(0);
  });

  it('loraMoeAsync runs off the main thread (y fills while the main thread spins)', async () => {
    const rng = testRng();
    const E = 8, r = 64, din = 1024, dout = 1024, T = 512, k = 4;
    const tb = randomBank(rng, { E, r, din, dout });
    const x = rng.f32(T * din), ids = randomIds(rng, T, k, E, { skipRate: 0, allMinusOneRate: 0, maxRun: 1 }), w = randomWeights(rng, T * k);
    const y0 = rng.f32(T * dout);
    const y = new Float32Array(T * dout);
    kernels.setThreads(1);
    try {
      await expectWritesWhileMainThreadSpins(
        () => y.set(y0),
        () => kernels.loraMoeAsync(tb.bank, x, ids, w, { y }),
        () => y[T * dout - 1] !== y0[T * dout - 1],
      );
    } finally {
      await setThreadsSettled(0);
      tb.bank.dispose();
    }
  });
});

// ---- argument validation (test/helpers/validation.ts) ----

describe('loraMoe validation', () => {
  it('x, ids, weights or y of the wrong typed-array type is a TypeError naming it', async () => {
    const f = fixture();
    const cases: Array<[unknown[], RegExp]> = [
      [[new Float64Array(T * din), f.ids, f.w], /\bx\b/],
      [[f.x, Float32Array.from(f.ids), f.w], /\bids\b/],
      [[f.x, f.ids, Int32Array.from([1, 1, 1, 1])], /weights/],
      [[f.x, f.ids, f.w, { y: new Float64Array(T * dout) }], /\by\b/],
      [[f.x, f.ids, f.w, { y: Array.from(f.y) }], /\by\b/],
      [[f.x, f.ids, f.w, { y: null }], /\by\b/],
    ];
    for (const [args, re] of cases) {
      const [x, ids, w, opts] = args as [Float32Array, Int32Array, Float32Array, kernels.LoraMoeOptions];
      await bothFail(() => kernels.loraMoe(f.bank, x, ids, w, opts), () => kernels.loraMoeAsync(f.bank, x, ids, w, opts), TypeError, re);
    }
  });

  it('an x length that is not a multiple of din is a RangeError naming x', async () => {
    const f = fixture();
    const x = f.rng.f32(T * din + 1);
    await bothFail(() => kernels.loraMoe(f.bank, x, f.ids, f.w), () => kernels.loraMoeAsync(f.bank, x, f.ids, f.w), RangeError, /\bx\b/, /din/);
  });

  it('ids whose length is not T·k (one too many, one too few, empty) is a RangeError naming ids', async () => {
    const f = fixture();
    for (const ids of [Int32Array.from([0, 1, 2, -1, 0]), Int32Array.from([0, 1, 2]), new Int32Array(0)]) {
      const w = f.rng.f32(ids.length);
      await bothFail(() => kernels.loraMoe(f.bank, f.x, ids, w), () => kernels.loraMoeAsync(f.bank, f.x, ids, w), RangeError, /\bids\b/);
    }
  });

  it('ids implying k > experts slots per token is a RangeError naming ids', async () => {
    const f = fixture();
    const ids = new Int32Array(T * (E + 1)).fill(-1), w = f.rng.f32(T * (E + 1));
    await bothFail(() => kernels.loraMoe(f.bank, f.x, ids, w), () => kernels.loraMoeAsync(f.bank, f.x, ids, w), RangeError, /\bids\b/);
  });

  it('weights whose length differs from ids is a RangeError naming weights', async () => {
    const f = fixture();
    for (const w of [f.rng.f32(T * k + 1), f.rng.f32(T * k - 1)]) {
      await bothFail(() => kernels.loraMoe(f.bank, f.x, f.ids, w), () => kernels.loraMoeAsync(f.bank, f.x, f.ids, w), RangeError, /weights/);
    }
  });

  it('a y of the wrong length is a RangeError naming y', async () => {
    const f = fixture();
    for (const y of [f.rng.f32(T * dout - 1), f.rng.f32(T * dout + 1), new Float32Array(0)]) {
      await bothFail(() => kernels.loraMoe(f.bank, f.x, f.ids, f.w, { y }), () => kernels.loraMoeAsync(f.bank, f.x, f.ids, f.w, { y }), RangeError, /\by\b/);
    }
  });

  it('T = 0 with non-empty ids is a RangeError naming ids', async () => {
    const f = fixture();
    const x = new Float32Array(0);
    await bothFail(() => kernels.loraMoe(f.bank, x, f.ids, f.w), () => kernels.loraMoeAsync(f.bank, x, f.ids, f.w), RangeError, /\bids\b/);
  });

  it('an id >= experts or < -1 is a RangeError naming ids and the index, and y is left untouched', async () => {
    const f = fixture();
    for (const [i, bad] of [[3, E], [1, -2], [0, 1 << 30]]) {
      const ids = f.ids.slice();
      ids[i] = bad;
      const y = f.y.slice();
      await bothFail(
        () => kernels.loraMoe(f.bank, f.x, ids, f.w, { y }), () => kernels.loraMoeAsync(f.bank, f.x, ids, f.w, { y }),
        RangeError, /\bids\b/, new RegExp(`index ${i}\\b`),
      );
      expectBitsEqual(y, f.y, 'y after a refused call');
    }
  });

  it('a NaN or infinite weight is a RangeError naming weights, and y is left untouched', async () => {
    const f = fixture();
    for (const bad of [NaN, Infinity, -Infinity]) {
      const w = f.w.slice();
      w[3] = bad;
      const y = f.y.slice();
      await bothFail(() => kernels.loraMoe(f.bank, f.x, f.ids, w, { y }), () => kernels.loraMoeAsync(f.bank, f.x, f.ids, w, { y }), RangeError, /weights/);
      expectBitsEqual(y, f.y, 'y after a refused call');
    }
  });

  it('something other than a LoraBank for bank (plain object, null, the native handle\'s look-alike) is a TypeError naming bank', async () => {
    const f = fixture();
    for (const bad of [{}, null, undefined, { native: f.bank.native, din, dout }, 42]) {
      await bothFail(() => kernels.loraMoe(bad, f.x, f.ids, f.w), () => kernels.loraMoeAsync(bad, f.x, f.ids, f.w), TypeError, /\bbank\b/);
    }
  });
});

describe('native binding validation (the C++ layer on its own)', () => {
  it('loraMoe: lengths off by one for x, ids, weights and y; wrong types', async () => {
    const f = nativeFixture();
    const cases: Array<[unknown[], ErrorClass, RegExp]> = [
      [[f.rng.f32(T * din + 1), f.ids, f.w], RangeError, /\bx\b/],
      [[f.rng.f32(T * din - 1), f.ids, f.w], RangeError, /\bx\b/],
      [[f.x, Int32Array.from([0, 1, 2]), f.rng.f32(3)], RangeError, /\bids\b/],
      [[f.x, f.ids, f.rng.f32(5)], RangeError, /weights/],
      [[f.x, f.ids, f.w, f.rng.f32(T * dout + 1)], RangeError, /\by\b/],
      [[f.x, f.ids, f.w, null], TypeError, /\by\b/],
      [[f.x, f.ids, f.w, 'y'], TypeError, /\by\b/],
      [['x', f.ids, f.w], TypeError, /\bx\b/],
      [[f.x, [0, 1, 2, -1], f.w], TypeError, /\bids\b/],
      [[f.x, f.ids, new Float64Array(4)], TypeError, /weights/],
      [[f.x, Int32Array.from([0, 1, 7, -1]), f.w], RangeError, /\bids\b/],
      [[f.x, f.ids, Float32Array.from([1, 1, NaN, 1])], RangeError, /weights/],
    ];
    for (const [args, cls, re] of cases) {
      const a = args as [Float32Array, Int32Array, Float32Array, Float32Array?];
      await bothFail(() => nb().loraMoe(f.nbank, ...a), () => nb().loraMoeAsync(f.nbank, ...a), cls, re);
    }
  });
});

describe('async variants report errors by rejecting their Promise', () => {
  // The argument checks made while the call is made reject too (binding.test.ts has the data errors).
  it('loraMoeAsync rejects (does not throw) for an x of the wrong length', async () => {
    const f = fixture();
    await expectRejectsOnly(() => kernels.loraMoeAsync(f.bank, f.rng.f32(T * din + 1), f.ids, f.w), RangeError, /\bx\b/);
  });
});

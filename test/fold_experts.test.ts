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
import { kernels, reference } from '../lib';
import { expectWritesWhileMainThreadSpins } from './helpers/async';
import {
  absArray, BANK_KINDS, describeEachSimd, randomBank, randomIds, randomWeights, TestBank,
} from './helpers/bank';
import {
  boundFrom, countNaN, countPoisoned, expectBitsEqual, expectClose, poison, POISON_BITS,
} from './helpers/check';
import { seedNote, testRng } from './helpers/rng';
import { setThreadsSettled } from './helpers/threads';

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

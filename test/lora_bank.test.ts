// LoraBank: construction, what it holds, and its lifecycle (dispose, pending async calls).
// Then createLoraBank's argument validation (test/helpers/validation.ts). A bank on the CUDA
// device: test/device_lora_bank.test.ts.
import { DisposedError, kernels, reference } from '../lib';
import { binding } from '../lib/kernels/binding';
import { BankSpec, DTYPES, randomBank, randomIds, randomWeights } from './helpers/bank';
import {
  expectAsyncFails, expectBitsEqual, expectThrows, poison, typedArrayTag,
} from './helpers/check';
import { testRng } from './helpers/rng';
import { din, dout, E, ErrorClass, nb, r } from './helpers/validation';

const ELEM = { f32: 4, f16: 2, bf16: 2 } as const;

/** foldExperts with weight 1 and scale 1 copies A exactly: the bank's stored values of expert e, as f32, [din, r_e] -> A[q, i]. */
function storedA(bank: kernels.LoraBank, e: number): Float32Array {
  const { din, rank } = bank;
  const out = { a: new Float32Array(din * rank), b: new Float32Array(rank * bank.dout), rankCapacity: rank };
  kernels.foldExperts(bank, Int32Array.from([e]), Float32Array.from([1 / bank.scales[e]]), 1, out);
  const A = new Float32Array(rank * din);
  for (let q = 0; q < rank; q++) for (let i = 0; i < din; i++) A[q * din + i] = out.a[i * rank + q];
  return A;
}

describe('LoraBank', () => {
  it('createLoraBank returns a LoraBank with the given shape, dtype, scales and ranks', () => {
    const rng = testRng();
    const tb = randomBank(rng, { E: 3, r: 5, din: 7, dout: 4, dtype: 'bf16', ranks: [5, 0, 2] });
    const { bank } = tb;
    expect(bank).toBeInstanceOf(kernels.LoraBank);
    expect([bank.experts, bank.rank, bank.din, bank.dout, bank.dtype]).toEqual([3, 5, 7, 4, 'bf16']);
    expect(Array.from(bank.ranks)).toEqual([5, 0, 2]);
    expect(Array.from(bank.scales)).toEqual(Array.from(tb.options.scales!));
    const plain = kernels.createLoraBank({ experts: 2, rank: 3, din: 4, dout: 5, a: rng.f32(24), b: rng.f32(30) });
    expect(plain.dtype).toBe('f32');
    expect(Array.from(plain.scales)).toEqual([1, 1]);
    expect(Array.from(plain.ranks)).toEqual([3, 3]);
  });

  it.each(DTYPES)('bytes = Σ r_e·(din + dout)·element size for %s: padding past an expert rank is not stored', (dtype) => {
    const rng = testRng();
    const spec: BankSpec = { E: 4, r: 8, din: 33, dout: 17, dtype, ranks: [8, 0, 3, 1] };
    const tb = randomBank(rng, spec);
    expect(tb.bank.bytes).toBe((8 + 0 + 3 + 1) * (33 + 17) * ELEM[dtype]);
    const full = randomBank(rng, { ...spec, ranks: undefined });
    expect(full.bank.bytes).toBe(4 * 8 * (33 + 17) * ELEM[dtype]);
  });

  it('bytes > 0 before dispose() and 0 after; a second dispose() is harmless', () => {
    const rng = testRng();
    const { bank } = randomBank(rng, { E: 2, r: 4, din: 10, dout: 6 });
    expect(bank.bytes).toBeGreaterThan(0);
    bank.dispose();
    expect(bank.bytes).toBe(0);
    expect(() => bank.dispose()).not.toThrow();
    expect(bank.bytes).toBe(0);
    expect(() => bank.native).toThrow(DisposedError);
  });

  it('every op on a disposed bank fails with DisposedError naming the LoraBank, sync and async', async () => {
    const rng = testRng();
    const { bank } = randomBank(rng, { E: 2, r: 2, din: 3, dout: 4 });
    const ids = Int32Array.from([0]), w = Float32Array.from([1]);
    const out = { a: new Float32Array(3 * 2), b: new Float32Array(2 * 4), rankCapacity: 2 };
    bank.dispose();
    const x = rng.f32(3), W = rng.f32(12);
    expectThrows(() => kernels.loraMoe(bank, x, ids, w), DisposedError, /LoraBank/, /disposed/);
    expectThrows(() => kernels.foldExperts(bank, ids, w, 1, out), DisposedError, /LoraBank/);
    expectThrows(() => kernels.mergeExperts(bank, ids, w, W), DisposedError, /LoraBank/);
    await expectAsyncFails(() => kernels.loraMoeAsync(bank, x, ids, w), DisposedError, /LoraBank/);
    await expectAsyncFails(() => kernels.foldExpertsAsync(bank, ids, w, 1, out), DisposedError, /LoraBank/);
    await expectAsyncFails(() => kernels.mergeExpertsAsync(bank, ids, w, W), DisposedError, /LoraBank/);
  });

  it('a bank disposed through its native handle is refused by the native layer with an error naming bank', async () => {
    const rng = testRng();
    const { bank } = randomBank(rng, { E: 2, r: 2, din: 3, dout: 4 });
    const native = bank.native;
    native.dispose();
    expect(bank.bytes).toBe(0);
    const ids = Int32Array.from([0]), w = Float32Array.from([1]);
    expectThrows(() => kernels.loraMoe(bank, rng.f32(3), ids, w), Error, /bank/, /disposed/);
    expectThrows(() => binding().mergeExperts(native, ids, w, rng.f32(12), 0, false), Error, /bank/, /disposed/);
    await expectAsyncFails(() => binding().foldExpertsAsync(native, ids, w, 1, new Float32Array(6), new Float32Array(8), 2), Error, /bank/, /disposed/);
  });

  it('disposing while async calls are pending: they still resolve to the right values', async () => {
    const rng = testRng();
    const E = 4, r = 16, din = 1024, dout = 1024, T = 64, k = 2;
    const { bank } = randomBank(rng, { E, r, din, dout, dtype: 'f16' });
    const x = rng.f32(T * din), ids = randomIds(rng, T, k, E, { allMinusOneRate: 0 }), w = randomWeights(rng, T * k);
    const mIds = Int32Array.from([0, 2, 3]), mW = randomWeights(rng, 3), W = rng.f32(din * dout);
    const fIds = ids.subarray(0, 4 * k), fW = w.subarray(0, 4 * k);
    const fold = () => ({ a: poison(new Float32Array(4 * din * 2 * r)), b: poison(new Float32Array(4 * 2 * r * dout)), rankCapacity: 2 * r });
    const wantY = kernels.loraMoe(bank, x, ids, w);
    const wantW = kernels.mergeExperts(bank, mIds, mW, W);
    const wantF = fold();
    kernels.foldExperts(bank, fIds, fW, k, wantF);

    const gotF = fold();
    const pending = [
      kernels.loraMoeAsync(bank, x, ids, w),
      kernels.mergeExpertsAsync(bank, mIds, mW, W),
      kernels.foldExpertsAsync(bank, fIds, fW, k, gotF),
      kernels.loraMoeAsync(bank, x, ids, w),
    ];
    bank.dispose();
    expect(bank.bytes).toBe(0);
    const [y1, W1, , y2] = await Promise.all(pending);
    expectBitsEqual(y1 as Float32Array, wantY, 'loraMoeAsync pending at dispose');
    expectBitsEqual(y2 as Float32Array, wantY, 'second loraMoeAsync pending at dispose');
    expectBitsEqual(W1 as Float32Array, wantW, 'mergeExpertsAsync pending at dispose');
    expectBitsEqual(gotF.a, wantF.a, 'foldExpertsAsync out.a pending at dispose');
    expectBitsEqual(gotF.b, wantF.b, 'foldExpertsAsync out.b pending at dispose');
    expect(() => kernels.loraMoe(bank, x, ids, w)).toThrow(DisposedError);
  });

  it('the bank copies its inputs: changing a, b, scales or ranks afterwards changes nothing', () => {
    const rng = testRng();
    for (const dtype of DTYPES) {
      const tb = randomBank(rng, { E: 3, r: 4, din: 9, dout: 8, dtype, input: 'bits', ranks: [4, 2, 3] });
      const x = rng.f32(2 * 9), ids = Int32Array.from([0, 1, 2, -1]), w = randomWeights(rng, 4);
      const before = kernels.loraMoe(tb.bank, x, ids, w);
      tb.options.a.fill(0x3c00);
      tb.options.b.fill(0x3c00);
      tb.options.scales!.fill(7);
      tb.options.ranks!.fill(0);
      expectBitsEqual(kernels.loraMoe(tb.bank, x, ids, w), before, `${dtype} after changing the inputs`);
      expect(Array.from(tb.bank.ranks)).toEqual([4, 2, 3]);
      expect(tb.bank.scales[0]).not.toBe(7);
    }
  });

  it('no scales option means scale 1 and no ranks option means every expert at full rank', () => {
    const rng = testRng();
    const E = 3, r = 4, din = 11, dout = 6;
    const a = rng.f32(E * r * din), b = rng.f32(E * dout * r);
    const bare = kernels.createLoraBank({ experts: E, rank: r, din, dout, a, b });
    const explicit = kernels.createLoraBank({
      experts: E, rank: r, din, dout, a, b, scales: new Float32Array(E).fill(1), ranks: new Int32Array(E).fill(r),
    });
    const x = rng.f32(3 * din), ids = randomIds(rng, 3, 2, E), w = randomWeights(rng, 6);
    expectBitsEqual(kernels.loraMoe(bare, x, ids, w), kernels.loraMoe(explicit, x, ids, w), 'defaults vs explicit');
  });

  it.each(['f16', 'bf16'] as const)('a %s bank built from Float32Array holds exactly the round-to-nearest-even values of kernels.toBits', (dtype) => {
    const rng = testRng();
    const E = 2, r = 3, din = 50, dout = 2;
    const a = rng.f32(E * r * din, -70000, 70000); // beyond f16's range too: rounds to ±Infinity
    a.set([1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65519, 65520]);
    const bank = kernels.createLoraBank({ experts: E, rank: r, din, dout, dtype, a, b: rng.f32(E * dout * r) });
    const conv = dtype === 'f16' ? kernels.f16BitsToF32 : kernels.bf16BitsToF32;
    const bits = kernels.toBits(a, dtype);
    for (let e = 0; e < E; e++) {
      const got = storedA(bank, e);
      const want = Float32Array.from(bits.subarray(e * r * din, (e + 1) * r * din), conv);
      expectBitsEqual(got, want, `${dtype} expert ${e}`);
    }
  });

  it('an f16 bank accepts a Float32Array that the addon itself returned (made in another realm under jest)', () => {
    // BUG (lib/kernels/lora_bank.ts): `v instanceof Float32Array` decides whether f16/bf16
    // values get rounded to bits. Arrays made by the addon come from Node's main realm, which
    // under jest (or node:vm) is not the caller's realm, so they skip the rounding and the
    // native layer rejects them: "Expected Uint16Array for a but received Float32Array".
    const rng = testRng();
    const src = randomBank(rng, { E: 1, r: 2, din: 4, dout: 3 });
    const W = kernels.mergeExperts(src.bank, Int32Array.from([0]), Float32Array.from([0.5]), rng.f32(12));
    expect(typedArrayTag(W)).toBe('Float32Array');
    const bank = kernels.createLoraBank({ experts: 1, rank: 3, din: 4, dout: 2, dtype: 'f16', a: W, b: rng.f32(6) });
    expect(bank.bytes).toBe(3 * (4 + 2) * 2);
  });

  it('reference.refBank rounds a Float32Array made by the addon like any other (another realm under jest)', () => {
    // BUG (lib/reference/bank.ts): the same `instanceof Float32Array` test; a cross-realm
    // Float32Array is then decoded as if its float values were f16 bit patterns.
    const rng = testRng();
    const src = randomBank(rng, { E: 1, r: 2, din: 4, dout: 3 });
    const W = kernels.mergeExperts(src.bank, Int32Array.from([0]), Float32Array.from([0.5]), rng.f32(12));
    const same = Float32Array.from(W); // a copy made in the test's realm (W.slice() would stay in W's realm)
    const opts = { experts: 1, rank: 3, din: 4, dout: 2, dtype: 'f16' as const, b: rng.f32(6) };
    expect(Array.from(reference.refBank({ ...opts, a: W }).a)).toEqual(Array.from(reference.refBank({ ...opts, a: same }).a));
  });
});

// ---- argument validation (test/helpers/validation.ts) ----

describe('createLoraBank validation', () => {
  const good = () => {
    const rng = testRng();
    return { experts: E, rank: r, din, dout, a: rng.f32(E * r * din), b: rng.f32(E * dout * r) } as kernels.LoraBankOptions;
  };
  const fails = (opts: unknown, cls: ErrorClass, ...re: RegExp[]) => expectThrows(() => kernels.createLoraBank(opts as kernels.LoraBankOptions), cls, ...re);

  it('options that are not an object is a TypeError naming options', () => {
    fails(null, TypeError, /options/);
    fails(42, TypeError, /options/);
  });

  it('experts, rank, din, dout out of range or not integers are RangeErrors naming them; strings are TypeErrors', () => {
    for (const [key, bad] of [['experts', 0], ['experts', 1025], ['experts', 1.5], ['rank', 0], ['rank', -2], ['din', 0], ['dout', -1], ['dout', NaN]] as const) {
      fails({ ...good(), [key]: bad }, RangeError, new RegExp(`for ${key}\\b`));
    }
    fails({ ...good(), experts: '3' }, TypeError, /experts/);
    fails({ ...good(), din: undefined }, TypeError, /\bdin\b/);
  });

  it('an unknown dtype string is an error naming dtype', () => {
    for (const dtype of ['f64', 'F16', 'int8', 'constructor']) {
      const err = expectThrows(() => kernels.createLoraBank({ ...good(), dtype: dtype as never }), Error, /dtype/);
      expect(err.name === 'TypeError' || err.name === 'RangeError').toBe(true);
    }
  });

  it('a or b of the wrong length is a RangeError naming it', () => {
    const g = good();
    fails({ ...g, a: g.a.subarray(1) }, RangeError, /for a\b/);
    fails({ ...g, b: new Float32Array(g.b.length + 1) }, RangeError, /for b\b/);
    fails({ ...g, dtype: 'f16', a: new Uint16Array(g.a.length - 1) }, RangeError, /for a\b/);
  });

  it('a or b of the wrong type for the dtype is a TypeError naming it', () => {
    const g = good();
    fails({ ...g, a: new Float64Array(g.a.length) }, TypeError, /for a\b/);
    fails({ ...g, b: new Uint16Array(g.b.length) }, TypeError, /for b\b/); // f32 bank, 16-bit bits
    fails({ ...g, dtype: 'bf16', a: new Int16Array(g.a.length) }, TypeError, /for a\b/);
    fails({ ...g, a: undefined }, TypeError, /for a\b/);
  });

  it('non-finite scales are a RangeError naming scales; wrong length or type too', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const scales = Float32Array.from([1, bad, 2]);
      for (const dtype of ['f32', 'f16', 'bf16'] as const) fails({ ...good(), dtype, scales }, RangeError, /scales/, /index 1\b/);
    }
    fails({ ...good(), scales: new Float32Array(E + 1).fill(1) }, RangeError, /scales/);
    fails({ ...good(), scales: new Float64Array(E).fill(1) }, TypeError, /scales/);
  });

  it('ranks above rank or negative are a RangeError naming ranks; wrong length or type too', () => {
    fails({ ...good(), ranks: Int32Array.from([2, 3, 1]) }, RangeError, /ranks/, /index 1\b/);
    fails({ ...good(), ranks: Int32Array.from([2, 1, -1]) }, RangeError, /ranks/, /index 2\b/);
    fails({ ...good(), ranks: Int32Array.from([2, 1]) }, RangeError, /ranks/);
    fails({ ...good(), ranks: Float32Array.from([2, 1, 1]) }, TypeError, /ranks/);
  });
});

describe('native binding validation (the C++ layer on its own)', () => {
  it('new LoraBank: a bad dtype code, arrays not matching the dtype, non-finite scales', () => {
    const rng = testRng();
    const base = { experts: E, rank: r, din, dout, dtype: 0, a: rng.f32(E * r * din), b: rng.f32(E * dout * r) };
    const make = (o: object) => () => new (nb().LoraBank)(o as never);
    expectThrows(make({ ...base, dtype: 3 }), RangeError, /dtype/);
    expectThrows(make({ ...base, dtype: 'f16' }), TypeError, /dtype/);
    expectThrows(make({ ...base, dtype: 1 }), TypeError, /for a\b/);
    expectThrows(make({ ...base, experts: 2 }), RangeError, /for a\b/);
    expectThrows(make({ ...base, scales: Float32Array.from([1, NaN, 1]) }), RangeError, /scales/);
    expectThrows(make({ ...base, ranks: Int32Array.from([0, 0, 9]) }), RangeError, /ranks/);
    expectThrows(make({ ...base, rank: 2 ** 31 }), RangeError, /rank/);
  });
});

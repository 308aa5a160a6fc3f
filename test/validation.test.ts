// Argument validation: every bad argument is a TypeError (wrong kind of value) or RangeError
// (wrong size or contents) whose message names the argument; async variants fail the same way;
// nothing crashes the process; a refused call writes nothing. One describe per operation, then
// the raw native binding (to show the C++ layer validates on its own: the TS layer is thin),
// then the async variants' contract.
import { kernels } from '../lib';
import { binding } from '../lib/kernels/binding';
import { cpuinfoBest, randomBank } from './helpers/bank';
import {
  countPoisoned, expectAsyncFails, expectBitsEqual, expectRejectsOnly, expectThrows, poison,
} from './helpers/check';
import { testRng } from './helpers/rng';
import { setThreadsSettled } from './helpers/threads';

type ErrorClass = new (...args: never[]) => Error;

/** The sync call throws and the async one fails (rejects, or throws while called) alike. */
async function bothFail(
  sync: () => unknown, async: () => Promise<unknown>, cls: ErrorClass, ...patterns: RegExp[]
): Promise<void> {
  expectThrows(sync, cls, ...patterns);
  await expectAsyncFails(async, cls, ...patterns);
}

// A small bank and valid arguments for each op; each test breaks exactly one of them.
const E = 3, r = 2, din = 5, dout = 4, T = 2, k = 2;

function fixture() {
  const rng = testRng();
  const { bank } = randomBank(rng, { E, r, din, dout });
  return {
    rng,
    bank,
    x: rng.f32(T * din),
    ids: Int32Array.from([0, 1, 2, -1]),
    w: rng.f32(T * k),
    y: rng.f32(T * dout),
    out: () => ({ a: poison(new Float32Array(3 * din * k * r)), b: poison(new Float32Array(3 * k * r * dout)), rankCapacity: k * r, slots: Int32Array.from([2, 0]) }),
    mIds: Int32Array.from([0, 2]),
    mW: rng.f32(2),
    W: rng.f32(din * dout),
  };
}

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

describe('kernel settings validation', () => {
  afterAll(async () => {
    kernels.setSimd('avx512');
    await setThreadsSettled(0);
  });

  it('setSimd caps the level and returns the level in use; info().simd follows', () => {
    expect(kernels.setSimd('scalar')).toBe('scalar');
    expect(kernels.info().simd).toBe('scalar');
    const best = kernels.setSimd('avx512');
    expect(kernels.info().simd).toBe(best);
    // the dispatcher's pick matches what the CPU reports
    const cpu = cpuinfoBest();
    if (cpu !== undefined) expect(best).toBe(cpu);
  });

  it('an unknown SIMD level is a RangeError naming simd, a non-string a TypeError; the level is kept', () => {
    kernels.setSimd('avx2');
    expectThrows(() => kernels.setSimd('sse4' as never), RangeError, /simd/);
    expectThrows(() => kernels.setSimd(2 as never), TypeError, /simd/);
    expect(kernels.info().simd).toBe('avx2');
    kernels.setSimd('avx512');
  });

  it('a negative, non-integer or non-number thread count is an error naming threads', () => {
    expectThrows(() => kernels.setThreads(-1), RangeError, /threads/);
    expectThrows(() => kernels.setThreads(1.5), RangeError, /threads/);
    expectThrows(() => kernels.setThreads(2000), RangeError, /threads/);
    expectThrows(() => kernels.setThreads('2' as never), TypeError, /threads/);
  });
});

describe('native binding validation (the C++ layer on its own)', () => {
  const nb = () => binding();
  const nativeFixture = () => {
    const f = fixture();
    return { ...f, nbank: f.bank.native };
  };

  it('a bank that is not a native LoraBank is a TypeError naming bank', async () => {
    const f = nativeFixture();
    for (const bad of [{}, null, undefined, f.bank, { dispose() {}, bytes: () => 1 }]) {
      await bothFail(() => nb().loraMoe(bad as never, f.x, f.ids, f.w), () => nb().loraMoeAsync(bad as never, f.x, f.ids, f.w), TypeError, /\bbank\b/);
      expectThrows(() => nb().mergeExperts(bad as never, f.mIds, f.mW, f.W, 0, false), TypeError, /\bbank\b/);
      expectThrows(() => nb().foldExperts(bad as never, f.ids, f.w, k, new Float32Array(60), new Float32Array(48), 4), TypeError, /\bbank\b/);
    }
  });

  it('no arguments at all is a TypeError naming the first argument', () => {
    expectThrows(() => (nb().topkSoftmax as () => unknown)(), TypeError, /logits/);
    expectThrows(() => (nb().loraMoe as () => unknown)(), TypeError, /\bbank\b/);
    expectThrows(() => (nb().foldExperts as () => unknown)(), TypeError, /\bbank\b/);
    expectThrows(() => (nb().mergeExperts as () => unknown)(), TypeError, /\bbank\b/);
    expectThrows(() => new (nb().LoraBank as unknown as new () => unknown)(), TypeError, /options/);
  });

  it('every argument position refuses every wrong kind of value with "Expected … for <argument> but received …"', () => {
    const f = nativeFixture();
    const R = k * r;
    const arrays = (n: number) => [null, 42, 'str', true, {}, [1, 2, 3], new Float64Array(n), new Uint8Array(n), new Int16Array(n)];
    const f32Bad = (n: number) => [...arrays(n), new Int32Array(n), new Uint16Array(n)];
    const i32Bad = (n: number) => [...arrays(n), new Float32Array(n), new Uint32Array(n)];
    const intBad = [null, undefined, '2', {}, true, NaN, Infinity, -1, 1.5, 1e12, new Float32Array(1)];
    const bankBad = [null, undefined, 42, 'bank', {}, [], f.bank, new Float32Array(4)];
    type Sig = { name: string; fn: (...a: unknown[]) => unknown; args: unknown[]; positions: Array<[number, string, unknown[]]> };
    const sigs: Sig[] = [
      {
        name: 'topkSoftmax', fn: nb().topkSoftmax as never, args: [f.rng.f32(8), 4, 2, false],
        positions: [[0, 'logits', [...f32Bad(8), undefined]], [1, 'experts', intBad], [2, 'k', intBad]],
      },
      {
        name: 'loraMoe', fn: nb().loraMoe as never, args: [f.nbank, f.x, f.ids, f.w, f.y],
        positions: [[0, 'bank', bankBad], [1, 'x', [...f32Bad(T * din), undefined]], [2, 'ids', [...i32Bad(T * k), undefined]], [3, 'weights', [...f32Bad(T * k), undefined]], [4, 'y', f32Bad(T * dout)]],
      },
      {
        name: 'foldExperts', fn: nb().foldExperts as never,
        args: [f.nbank, f.ids, f.w, k, new Float32Array(3 * din * R), new Float32Array(3 * R * dout), R, Int32Array.from([2, 0])],
        positions: [
          [0, 'bank', bankBad], [1, 'ids', [...i32Bad(T * k), undefined]], [2, 'weights', [...f32Bad(T * k), undefined]], [3, 'k', intBad],
          [4, 'out.a', [...f32Bad(3 * din * R), undefined]], [5, 'out.b', [...f32Bad(3 * R * dout), undefined]],
          [6, 'out.rankCapacity', intBad], [7, 'out.slots', i32Bad(2)],
        ],
      },
      {
        name: 'mergeExperts', fn: nb().mergeExperts as never, args: [f.nbank, f.mIds, f.mW, f.W, 0, false],
        positions: [[0, 'bank', bankBad], [1, 'ids', [...i32Bad(2), undefined]], [2, 'weights', [...f32Bad(2), undefined]], [3, 'w', [...f32Bad(din * dout), undefined]], [4, 'opts.layout', intBad]],
      },
    ];
    let checked = 0;
    for (const sig of sigs) {
      expect(() => sig.fn(...sig.args)).not.toThrow(); // the base arguments are valid
      for (const [pos, arg, values] of sig.positions) {
        const wording = new RegExp(`^Expected .+ for ${arg.replace('.', '\\.')} but received `);
        for (const v of values) {
          const args = sig.args.slice();
          args[pos] = v;
          let caught: unknown;
          try {
            sig.fn(...args);
          } catch (e) {
            caught = e;
          }
          const what = `${sig.name} ${arg} = ${typeof v === 'object' && v !== null ? v.constructor.name : String(v)}`;
          if (caught === undefined) throw new Error(`${what}: accepted`);
          const err = caught as Error;
          if (!(err.name === 'TypeError' || err.name === 'RangeError') || !wording.test(err.message)) {
            throw new Error(`${what}: ${err.name}: ${err.message}`);
          }
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(150);
  });

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

  it('setThreads / setSimd: negative, non-integer, strings', async () => {
    expectThrows(() => nb().setThreads(-3), RangeError, /threads/);
    expectThrows(() => nb().setThreads(0.5), RangeError, /threads/);
    expectThrows(() => nb().setThreads('1' as never), TypeError, /threads/);
    expectThrows(() => nb().setSimd('neon'), RangeError, /simd/);
    expectThrows(() => nb().setSimd(undefined as never), TypeError, /simd/);
    nb().setSimd('avx512');
    await setThreadsSettled(0);
  });
});

describe('async variants report errors by rejecting their Promise', () => {
  // Errors found while the kernel runs (NaN logits, ids out of range) already reject; the
  // argument checks done while the call is made throw synchronously instead, so callers that
  // only attach .catch() to the Promise never see them. These cases show each op.
  it('data errors found by the kernel reject (NaN logit, id out of range, NaN weight)', async () => {
    const f = fixture();
    await expectRejectsOnly(() => kernels.topkSoftmaxAsync(Float32Array.from([1, NaN]), 2, 1), RangeError, /logits/);
    await expectRejectsOnly(() => kernels.loraMoeAsync(f.bank, f.x, Int32Array.from([0, 5, 1, 1]), f.w), RangeError, /\bids\b/);
    await expectRejectsOnly(() => kernels.mergeExpertsAsync(f.bank, f.mIds, Float32Array.from([NaN, 1]), f.W), RangeError, /weights/);
  });

  it('topkSoftmaxAsync rejects (does not throw) for logits of the wrong type', async () => {
    await expectRejectsOnly(() => kernels.topkSoftmaxAsync(new Float64Array(4) as never, 2, 1), TypeError, /logits/);
  });

  it('loraMoeAsync rejects (does not throw) for an x of the wrong length', async () => {
    const f = fixture();
    await expectRejectsOnly(() => kernels.loraMoeAsync(f.bank, f.rng.f32(T * din + 1), f.ids, f.w), RangeError, /\bx\b/);
  });

  it('foldExpertsAsync rejects (does not throw) for an out.b of the wrong length', async () => {
    const f = fixture();
    const out = f.out();
    await expectRejectsOnly(() => kernels.foldExpertsAsync(f.bank, f.ids, f.w, k, { ...out, b: out.b.subarray(1) }), RangeError, /out\.b/);
  });

  it('mergeExpertsAsync rejects (does not throw) for a disposed bank', async () => {
    const f = fixture();
    f.bank.dispose();
    await expectRejectsOnly(() => kernels.mergeExpertsAsync(f.bank, f.mIds, f.mW, f.W), Error, /disposed/);
  });
});

// f16 / bf16 conversions (lib/kernels/dtype.ts) against known bit patterns and independent
// oracles, and the native decode (F16C / AVX-512 / scalar) against the TS one for all 65536
// bit patterns.
import { kernels } from '../lib';
import { describeEachSimd } from './helpers/bank';
import { expectBitsEqual } from './helpers/check';
import { testRng } from './helpers/rng';

const { f16BitsToF32, f32ToF16Bits, bf16BitsToF32, f32ToBf16Bits, toBits, toFloat64 } = kernels;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (v: number) => {
  f32[0] = v;
  return u32[0];
};
const fromBits = (u: number) => {
  u32[0] = u >>> 0;
  return f32[0];
};

const isF16NaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBf16NaN = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

/**
 * Independent oracle: the finite values of a 16-bit format sorted ascending (one entry per
 * value, +0 only), and "nearest, ties to the even bit pattern" found by binary search in float64.
 */
function nearestOracle(decode: (h: number) => number, isNaN16: (h: number) => boolean, maxFinite: number, infBits: number) {
  const vals: Array<{ v: number; h: number }> = [];
  for (let h = 0; h < 0x10000; h++) {
    if (isNaN16(h) || h === 0x8000) continue;
    const v = decode(h);
    if (Number.isFinite(v)) vals.push({ v, h });
  }
  vals.sort((a, b) => a.v - b.v);
  const ulpTop = vals[vals.length - 1].v - vals[vals.length - 2].v;
  return (x: number): number => {
    const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
    const ax = Math.abs(x);
    // overflow: at or beyond max + half an ulp rounds to infinity (ties go to the even "next" pattern, which is inf)
    if (ax >= maxFinite + ulpTop / 2) return sign | infBits;
    let lo = 0, hi = vals.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (vals[mid].v <= x) lo = mid;
      else hi = mid;
    }
    const a = vals[lo], b = vals[hi];
    const da = Math.abs(x - a.v), db = Math.abs(b.v - x);
    let pick = da < db ? a : db < da ? b : (a.h & 1) === 0 ? a : b;
    if (x <= vals[0].v) pick = vals[0];
    if (x >= vals[vals.length - 1].v) pick = vals[vals.length - 1];
    // keep the sign of zero results
    return pick.v === 0 ? sign : pick.h;
  };
}

describe('f16 / bf16 conversions', () => {
  it('f32ToF16Bits and f16BitsToF32 agree with known bit patterns', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f32ToF16Bits(65519.99)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // halfway to 65536: ties to even = infinity
    expect(f32ToF16Bits(-65520)).toBe(0xfc00);
    expect(f32ToF16Bits(Infinity)).toBe(0x7c00);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // halfway between 0 and 2^-24: ties to even = 0
    expect(f32ToF16Bits(fromBits(bitsOf(2 ** -25) + 1))).toBe(0x0001); // just above half rounds up
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 subnormal ulps: ties to even = 2
    expect(f32ToF16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f32ToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // halfway below it: ties to even (0x400)
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie, even stays
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, odd goes up
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(f32ToF16Bits(1e-10)).toBe(0);
    expect(f32ToF16Bits(-1e-10)).toBe(0x8000);
    expect(isF16NaN(f32ToF16Bits(NaN))).toBe(true);
    expect(Number.isNaN(f16BitsToF32(0x7e00))).toBe(true);
    expect(Number.isNaN(f16BitsToF32(0xfc01))).toBe(true);
  });

  it('f32ToBf16Bits and bf16BitsToF32 agree with known bit patterns (round to nearest even)', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(f32ToBf16Bits(-2)).toBe(0xc000);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie, even stays
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie, odd goes up
    expect(f32ToBf16Bits(fromBits(0x3f808001))).toBe(0x3f81); // just above the tie
    expect(f32ToBf16Bits(fromBits(0x3f807fff))).toBe(0x3f80); // just below the tie
    expect(f32ToBf16Bits(fromBits(0x7f7fffff))).toBe(0x7f80); // f32 max rounds to infinity
    expect(f32ToBf16Bits(fromBits(0x7f7f7fff))).toBe(0x7f7f);
    expect(f32ToBf16Bits(Infinity)).toBe(0x7f80);
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(fromBits(0x00008000))).toBe(0x0000); // subnormal tie, even stays
    expect(f32ToBf16Bits(fromBits(0x00018000))).toBe(0x0002); // subnormal tie, odd goes up
    expect(isBf16NaN(f32ToBf16Bits(NaN))).toBe(true);
    expect(isBf16NaN(f32ToBf16Bits(fromBits(0x7f800001)))).toBe(true); // a NaN whose top bits look like inf stays NaN
    expect(isBf16NaN(f32ToBf16Bits(fromBits(0xffffffff)))).toBe(true);
    expect(Number.isNaN(bf16BitsToF32(0x7fc0))).toBe(true);
  });

  it('every non-NaN f16 bit pattern survives f16 -> f32 -> f16, and NaN patterns decode to NaN and stay NaN', () => {
    let checked = 0;
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToF32(h);
      if (isF16NaN(h)) {
        if (!Number.isNaN(v) || !isF16NaN(f32ToF16Bits(v))) throw new Error(`f16 NaN 0x${h.toString(16)} -> ${v} -> 0x${f32ToF16Bits(v).toString(16)}`);
        continue;
      }
      if (f32ToF16Bits(v) !== h) throw new Error(`f16 0x${h.toString(16)} -> ${v} -> 0x${f32ToF16Bits(v).toString(16)}`);
      checked++;
    }
    expect(checked).toBe(65536 - 2 * 1023);
  });

  it('every non-NaN bf16 bit pattern survives bf16 -> f32 -> bf16', () => {
    let checked = 0;
    for (let h = 0; h < 0x10000; h++) {
      const v = bf16BitsToF32(h);
      if (isBf16NaN(h)) {
        if (!Number.isNaN(v) || !isBf16NaN(f32ToBf16Bits(v))) throw new Error(`bf16 NaN 0x${h.toString(16)} -> ${v}`);
        continue;
      }
      if (f32ToBf16Bits(v) !== h) throw new Error(`bf16 0x${h.toString(16)} -> ${v} -> 0x${f32ToBf16Bits(v).toString(16)}`);
      checked++;
    }
    expect(checked).toBe(65536 - 2 * 127);
  });

  it('f32ToF16Bits is round-to-nearest-even: every midpoint between f16 neighbours, and random floats, against a float64 oracle', () => {
    const oracle = nearestOracle(f16BitsToF32, isF16NaN, 65504, 0x7c00);
    const check = (x: number) => {
      const got = f32ToF16Bits(x), want = oracle(x);
      if (got !== want) throw new Error(`f32ToF16Bits(${x}) = 0x${got.toString(16)}, oracle 0x${want.toString(16)}`);
    };
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (f16BitsToF32(h) + f16BitsToF32(h + 1)) / 2; // exact in f32 (12 significant bits)
      if (Math.fround(mid) !== mid) throw new Error(`midpoint ${mid} is not a float32`);
      check(mid);
      check(-mid);
    }
    const rng = testRng();
    for (let i = 0; i < 50000; i++) {
      const x = Math.fround(rng.signed(0, 1) * 2 ** rng.uniform(-26, 17));
      check(x);
    }
  });

  it('f32ToBf16Bits is round-to-nearest-even: every midpoint between bf16 neighbours, and random floats, against a float64 oracle', () => {
    const oracle = nearestOracle(bf16BitsToF32, isBf16NaN, bf16BitsToF32(0x7f7f), 0x7f80);
    const check = (x: number) => {
      const got = f32ToBf16Bits(x), want = oracle(x);
      if (got !== want) throw new Error(`f32ToBf16Bits(${x}) = 0x${got.toString(16)}, oracle 0x${want.toString(16)}`);
    };
    for (let h = 0; h < 0x7f7f; h++) {
      const mid = (bf16BitsToF32(h) + bf16BitsToF32(h + 1)) / 2; // exact in f32 (9 significant bits)
      if (Math.fround(mid) !== mid) throw new Error(`midpoint ${mid} is not a float32`);
      check(mid);
      check(-mid);
    }
    const rng = testRng();
    for (let i = 0; i < 50000; i++) {
      const x = Math.fround(rng.signed(0, 1) * 2 ** rng.uniform(-135, 128));
      check(x);
    }
  });

  it('toBits and toFloat64 map arrays element by element', () => {
    const rng = testRng();
    const v = rng.f32(257, -100, 100);
    for (const dtype of ['f16', 'bf16'] as const) {
      const bits = toBits(v, dtype);
      expect(Object.prototype.toString.call(bits)).toBe('[object Uint16Array]');
      const one = dtype === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
      const dec = dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
      expect(Array.from(bits)).toEqual(Array.from(v, one));
      expect(Array.from(toFloat64(bits, dtype))).toEqual(Array.from(bits, dec));
    }
    expect(Array.from(toFloat64(v, 'f32'))).toEqual(Array.from(v));
  });

  describe('the native decode agrees with f16BitsToF32 / bf16BitsToF32 for all 65536 bit patterns', () => {
    // A bank of one expert, rank 1, din = 65536 holding every bit pattern; foldExperts with
    // weight 1 and scale 1 copies A into out.a (1.0 · v is exact: ±0, subnormals, infinities)
    // and B (the same patterns) into out.b through the scaled path.
    const all = Uint16Array.from({ length: 0x10000 }, (_, h) => h);
    describeEachSimd((level) => {
      it.each(['f16', 'bf16'] as const)('%s', (dtype) => {
        const bank = kernels.createLoraBank({ experts: 1, rank: 1, din: 0x10000, dout: 0x10000, dtype, a: all, b: all });
        const out = { a: new Float32Array(0x10000), b: new Float32Array(0x10000), rankCapacity: 1 };
        kernels.foldExperts(bank, Int32Array.from([0]), Float32Array.from([1]), 1, out);
        const dec = dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
        const isNaN16 = dtype === 'f16' ? isF16NaN : isBf16NaN;
        const want = Float32Array.from(all, dec);
        for (const [name, got] of [['out.a', out.a], ['out.b', out.b]] as const) {
          for (let h = 0; h < 0x10000; h++) {
            if (Number.isNaN(got[h]) !== isNaN16(h)) throw new Error(`${dtype} ${name} 0x${h.toString(16)} decoded to ${got[h]}`);
          }
          // compare the non-NaN patterns bit for bit
          const keep = (_: number, h: number) => !isNaN16(h);
          expectBitsEqual(got.filter(keep), want.filter(keep), `${dtype} ${name} at SIMD ${level}`);
        }
        bank.dispose();
      });
    });
  });
});

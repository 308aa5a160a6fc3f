// Bank dtypes and their bit conversions (f16 and bf16 travel as Uint16Array bits).
// Round to nearest even, as the C kernels (kernels/common/numeric.h) and PyTorch do.

export type BankDtype = 'f32' | 'f16' | 'bf16';

/** Float32Array test that also holds for arrays made in another realm (vm contexts, jest). */
export function isFloat32Array(v: unknown): v is Float32Array {
  return Object.prototype.toString.call(v) === '[object Float32Array]';
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  if (exp === 0) return sign * man * 2 ** -24;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a >= 0x7f800000) return sign | 0x7c00 | (a > 0x7f800000 ? 0x200 : 0);
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a < 0x38800000) {
    if (a < 0x33000000) return sign;
    const man = (a & 0x7fffff) | 0x800000;
    const shift = 126 - (a >>> 23);
    const q = man >>> shift;
    const rem = man & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    return sign | (q + (rem > half || (rem === half && q & 1) ? 1 : 0));
  }
  const q = (a - 0x38000000) >>> 13;
  const rem = a & 0x1fff;
  return sign | (q + (rem > 0x1000 || (rem === 0x1000 && q & 1) ? 1 : 0));
}

export function bf16BitsToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Values of a bank tensor as float64, whatever its dtype. */
export function toFloat64(data: Float32Array | Uint16Array, dtype: BankDtype): Float64Array {
  const out = new Float64Array(data.length);
  if (dtype === 'f32') out.set(data);
  else {
    const conv = dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
    for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  }
  return out;
}

/** 16-bit dtype bits widened to float32 (exact). */
export function fromBits(bits: Uint16Array, dtype: 'f16' | 'bf16'): Float32Array {
  const conv = dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = conv(bits[i]);
  return out;
}

/** Float values rounded to a 16-bit dtype's bits. */
export function toBits(data: ArrayLike<number>, dtype: 'f16' | 'bf16'): Uint16Array {
  const conv = dtype === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  return out;
}

// Scalar arithmetic shared by every backend: dtype conversion and the top-k insert.
//
// Each function is PF_HD (host and device) so the CUDA kernels use exactly the code the CPU
// test suite checks. They are `static inline` on purpose: kernels/cpu compiles some files
// with AVX-512 flags, and an external inline function emitted there could be picked by the
// linker for a scalar caller on a CPU without AVX-512.
#ifndef PF_COMMON_NUMERIC_H
#define PF_COMMON_NUMERIC_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define PF_HD __host__ __device__ static inline
#else
#define PF_HD static inline
#endif

namespace pf {

PF_HD float bits_to_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
#endif
}

PF_HD uint32_t f32_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
#endif
}

// IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN payloads kept).
PF_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_f32(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp != 0) return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return bits_to_f32(sign);                                   // +-0
  // subnormal: value = man * 2^-24; normalise the mantissa
  int e = -1;
  do { man <<= 1; ++e; } while ((man & 0x400u) == 0);
  return bits_to_f32(sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13));
}

// binary32 -> binary16, round to nearest even; overflow -> inf; NaN stays NaN.
PF_HD uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds past 65504
  if (a < 0x38800000u) {                                     // f16 subnormal or zero
    if (a < 0x33000000u) return sign;                        // below half the smallest subnormal
    const uint32_t man = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - (int)(a >> 23);                  // 14..24
    const uint32_t q = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    return (uint16_t)(sign | (q + (rem > half || (rem == half && (q & 1u)))));
  }
  const uint32_t q = (a - 0x38000000u) >> 13;                // rebias exponent 127 -> 15
  const uint32_t rem = a & 0x1fffu;
  return (uint16_t)(sign | (q + (rem > 0x1000u || (rem == 0x1000u && (q & 1u)))));
}

PF_HD float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

// binary32 -> bfloat16, round to nearest even; NaN stays NaN.
PF_HD uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Ordering of routing candidates: larger logit first, ties to the lower expert id.
PF_HD bool topk_before(float va, int32_t ia, float vb, int32_t ib) {
  return va > vb || (va == vb && ia < ib);
}

// Insert (v, id) into the best-first list vals/ids of length n < cap or == cap.
// Returns the new length (at most cap). Candidates are offered in increasing id order
// by the callers, but the rule above makes the result independent of that order.
PF_HD int topk_insert(float* vals, int32_t* ids, int n, int cap, float v, int32_t id) {
  if (n == cap && !topk_before(v, id, vals[n - 1], ids[n - 1])) return n;
  int pos = n < cap ? n : cap - 1;
  while (pos > 0 && topk_before(v, id, vals[pos - 1], ids[pos - 1])) {
    vals[pos] = vals[pos - 1];
    ids[pos] = ids[pos - 1];
    --pos;
  }
  vals[pos] = v;
  ids[pos] = id;
  return n < cap ? n + 1 : n;
}

}  // namespace pf
#endif

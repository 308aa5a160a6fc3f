// AVX-512 level (16 lanes, masked tails). This file alone is compiled with
// -mavx512f -mavx512bw -mavx512vl -mfma -mf16c.
#include <immintrin.h>

#include "ops.h"

namespace pf {
namespace {

struct V {
  static constexpr int W = 16;
  static constexpr int REGS = 32;
  typedef __m512 vec;
  static __mmask16 mask(int n) { return n == W ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }
  static vec zero() { return _mm512_setzero_ps(); }
  static vec set1(float f) { return _mm512_set1_ps(f); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static vec load_f32(const float* p, int n) {
    return n == W ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask(n), p);
  }
  static void store_f32(float* p, vec v, int n) {
    if (n == W) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, mask(n), v);
  }
  static __m256i load_u16(const uint16_t* p, int n) {
    return n == W ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                  : _mm256_maskz_loadu_epi16(mask(n), p);
  }
  static vec load_f16(const uint16_t* p, int n) { return _mm512_cvtph_ps(load_u16(p, n)); }
  static vec load_bf16(const uint16_t* p, int n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(load_u16(p, n)), 16));
  }
};

#include "gemv_template.inl"

}  // namespace

const SimdOps& simd_avx512() {
  static const SimdOps ops = {"avx512", 16, gemv_acc_impl, convert_scale_impl};
  return ops;
}

}  // namespace pf

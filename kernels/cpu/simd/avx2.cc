// AVX2 + FMA + F16C level (8 lanes). This file alone is compiled with -mavx2 -mfma -mf16c.
#include <immintrin.h>
#include <string.h>

#include "ops.h"

namespace pf {
namespace {

struct V {
  static constexpr int W = 8;
  static constexpr int REGS = 16;
  typedef __m256 vec;
  static vec zero() { return _mm256_setzero_ps(); }
  static vec set1(float f) { return _mm256_set1_ps(f); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static vec fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  // Partial vectors (n < 8, only at the end of a row) go through a zeroed buffer so that no
  // byte past the row is read.
  static vec load_f32(const float* p, int n) {
    if (n == W) return _mm256_loadu_ps(p);
    float tmp[8] = {0};
    memcpy(tmp, p, n * sizeof(float));
    return _mm256_loadu_ps(tmp);
  }
  static void store_f32(float* p, vec v, int n) {
    if (n == W) return _mm256_storeu_ps(p, v);
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    memcpy(p, tmp, n * sizeof(float));
  }
  static __m128i load_u16(const uint16_t* p, int n) {
    if (n == W) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    uint16_t tmp[8] = {0};
    memcpy(tmp, p, n * sizeof(uint16_t));
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(tmp));
  }
  static vec load_f16(const uint16_t* p, int n) { return _mm256_cvtph_ps(load_u16(p, n)); }
  static vec load_bf16(const uint16_t* p, int n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load_u16(p, n)), 16));
  }
};

#include "gemv_template.inl"

}  // namespace

const SimdOps& simd_avx2() {
  static const SimdOps ops = {"avx2", 8, gemv_acc_impl, convert_scale_impl};
  return ops;
}

}  // namespace pf

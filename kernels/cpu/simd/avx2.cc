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
  // softmax_template.inl
  static vec sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
  static vec max(vec a, vec b) { return _mm256_max_ps(a, b); }
  static float hmax(vec v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
  }
  static float hsum(vec v) {
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_shuffle_ps(m, m, 1)));
  }
  static vec load_f32_or(const float* p, int n, float fill) {
    if (n == W) return _mm256_loadu_ps(p);
    float tmp[8] = {fill, fill, fill, fill, fill, fill, fill, fill};
    memcpy(tmp, p, n * sizeof(float));
    return _mm256_loadu_ps(tmp);
  }
  static bool not_below(vec v, float f) {
    return _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(f), _CMP_NLT_UQ)) != 0;
  }
  typedef __m256i ivec;
  static ivec key(vec v) {  // -0 -> +0, then flip the magnitude bits of negatives
    const __m256i b = _mm256_castps_si256(_mm256_add_ps(v, _mm256_setzero_ps()));
    return _mm256_xor_si256(b, _mm256_and_si256(_mm256_srai_epi32(b, 31), _mm256_set1_epi32(0x7fffffff)));
  }
  static ivec iload(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static void istore(int32_t* p, ivec v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static ivec imax(ivec a, ivec b) { return _mm256_max_epi32(a, b); }
  static int32_t ihmax(ivec v) {
    __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4e));
    return _mm_cvtsi128_si32(_mm_max_epi32(m, _mm_shuffle_epi32(m, 0xb1)));
  }
  static uint32_t ieq_bits(ivec v, int32_t x) {
    return (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, _mm256_set1_epi32(x))));
  }
  static ivec ikeep(ivec v, int n) {
    const __m256i past = _mm256_cmpgt_epi32(_mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8), _mm256_set1_epi32(n));
    return _mm256_blendv_epi8(v, _mm256_set1_epi32((int32_t)0x80000000u), past);
  }
  static ivec iretire(ivec v, int lane) {
    const __m256i hit = _mm256_cmpeq_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(lane));
    return _mm256_blendv_epi8(v, _mm256_set1_epi32((int32_t)0x80000000u), hit);
  }
  static vec exp(vec x) {
    // Cephes expf: x = n ln2 + r, |r| <= ln2/2; e^r by a degree-7 polynomial; 2^n in the exponent.
    const vec keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_GE_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
    const vec n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    vec p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
  }
};

#include "gemv_template.inl"
#include "moe_template.inl"
#include "softmax_template.inl"

}  // namespace

const SimdOps& simd_avx2() {
  static const SimdOps ops = {"avx2", 8, gemv_acc_impl, convert_scale_impl, convert_rows_impl,
                                shrink_impl,
                                expand_impl, softmax_rows_impl,
                                topk_rows_impl};
  return ops;
}

}  // namespace pf

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
  // softmax_template.inl
  static vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
  static vec max(vec a, vec b) { return _mm512_max_ps(a, b); }
  static float hmax(vec v) { return _mm512_reduce_max_ps(v); }
  static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
  static vec load_f32_or(const float* p, int n, float fill) {
    return n == W ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mask(n), p);
  }
  static bool not_below(vec v, float f) {
    return _mm512_cmp_ps_mask(v, _mm512_set1_ps(f), _CMP_NLT_UQ) != 0;
  }
  typedef __m512i ivec;
  static ivec key(vec v) {  // -0 -> +0, then flip the magnitude bits of negatives
    const __m512i b = _mm512_castps_si512(_mm512_add_ps(v, _mm512_setzero_ps()));
    return _mm512_xor_si512(b, _mm512_and_si512(_mm512_srai_epi32(b, 31), _mm512_set1_epi32(0x7fffffff)));
  }
  static ivec iload(const int32_t* p) { return _mm512_loadu_si512(p); }
  static void istore(int32_t* p, ivec v) { _mm512_storeu_si512(p, v); }
  static ivec imax(ivec a, ivec b) { return _mm512_max_epi32(a, b); }
  static int32_t ihmax(ivec v) { return _mm512_reduce_max_epi32(v); }
  static uint32_t ieq_bits(ivec v, int32_t x) { return _mm512_cmpeq_epi32_mask(v, _mm512_set1_epi32(x)); }
  static ivec ikeep(ivec v, int n) {
    return _mm512_mask_mov_epi32(v, (__mmask16)~mask(n), _mm512_set1_epi32((int32_t)0x80000000u));
  }
  static ivec iretire(ivec v, int lane) {
    return _mm512_mask_mov_epi32(v, (__mmask16)(1u << lane), _mm512_set1_epi32((int32_t)0x80000000u));
  }
  static vec exp(vec x) {
    // Cephes expf: x = n ln2 + r, |r| <= ln2/2; e^r by a degree-7 polynomial; 2^n in the exponent.
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.33654f));
    const vec n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vec r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    vec p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mov_ps(keep, _mm512_mul_ps(p, _mm512_castsi512_ps(e)));
  }
};

#include "gemv_template.inl"
#include "moe_template.inl"
#include "softmax_template.inl"

}  // namespace

const SimdOps& simd_avx512() {
  static const SimdOps ops = {"avx512", 16, gemv_acc_impl, convert_scale_impl, convert_rows_impl,
                                shrink_impl,
                                expand_impl, softmax_rows_impl,
                                topk_rows_impl};
  return ops;
}

}  // namespace pf

// Portable level: one lane per "vector". Compiled without ISA flags, so it runs on any CPU
// (x86-64 without AVX2, arm64); the compiler may still auto-vectorise it for the baseline.
#include "../../common/numeric.h"
#include "ops.h"

#include <math.h>
#include <string.h>

namespace pf {
namespace {

struct V {
  static constexpr int W = 1;
  static constexpr int REGS = 16;
  typedef float vec;
  static vec zero() { return 0.0f; }
  static vec set1(float f) { return f; }
  static vec add(vec a, vec b) { return a + b; }
  static vec mul(vec a, vec b) { return a * b; }
  static vec fma(vec a, vec b, vec c) { return a * b + c; }
  static vec load_f32(const float* p, int) { return *p; }
  static void store_f32(float* p, vec v, int) { *p = v; }
  static vec load_f16(const uint16_t* p, int) { return f16_to_f32(*p); }
  static vec load_bf16(const uint16_t* p, int) { return bf16_to_f32(*p); }
  // softmax_template.inl
  static vec sub(vec a, vec b) { return a - b; }
  static vec max(vec a, vec b) { return a > b ? a : b; }
  static float hmax(vec v) { return v; }
  static float hsum(vec v) { return v; }
  static vec load_f32_or(const float* p, int, float) { return *p; }
  static bool not_below(vec v, float f) { return !(v < f); }
  static vec exp(vec x) { return expf(x); }
  typedef int32_t ivec;
  static ivec key(vec v) {  // -0 -> +0, then flip the magnitude bits of negatives
    const float z = v + 0.0f;
    int32_t b;
    memcpy(&b, &z, sizeof b);
    return b ^ ((b >> 31) & 0x7fffffff);
  }
  static ivec iload(const int32_t* p) { return *p; }
  static void istore(int32_t* p, ivec v) { *p = v; }
  static ivec imax(ivec a, ivec b) { return a > b ? a : b; }
  static int32_t ihmax(ivec v) { return v; }
  static uint32_t ieq_bits(ivec v, int32_t x) { return v == x ? 1u : 0u; }
  static ivec ikeep(ivec v, int) { return v; }
  static ivec iretire(ivec, int) { return (int32_t)0x80000000u; }
};

#include "gemv_template.inl"
#include "moe_template.inl"
#include "softmax_template.inl"

}  // namespace

const SimdOps& simd_scalar() {
  static const SimdOps ops = {"scalar", 1, gemv_acc_impl, convert_scale_impl, convert_rows_impl,
                                shrink_impl,
                                expand_impl, softmax_rows_impl,
                                topk_rows_impl};
  return ops;
}

}  // namespace pf

// Portable level: one lane per "vector". Compiled without ISA flags, so it runs on any CPU
// (x86-64 without AVX2, arm64); the compiler may still auto-vectorise it for the baseline.
#include "../../common/numeric.h"
#include "ops.h"

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
};

#include "gemv_template.inl"

}  // namespace

const SimdOps& simd_scalar() {
  static const SimdOps ops = {"scalar", 1, gemv_acc_impl, convert_scale_impl};
  return ops;
}

}  // namespace pf
